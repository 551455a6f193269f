"""The 1-D U-Net denoiser: size, shapes, batch isolation of attention, conditioning and its null embedding."""

import math

import pytest
import torch

from crysgen.model import UNet1D, UNetConfig, sinusoidal_embedding

TINY = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, emb_dim=16, attn_heads=2, groups=4)


def _randomise_output(net: UNet1D) -> UNet1D:
    # the output conv starts at zero (D = c_skip x); give it weights so outputs depend on the input
    torch.nn.init.normal_(net.out.weight, std=0.1, generator=torch.Generator().manual_seed(1))
    return net


def test_default_parameter_count_is_about_1_3_million():
    for cond_dim in (0, 1):
        n = sum(p.numel() for p in UNet1D(5, cond_dim=cond_dim).parameters())
        assert abs(n - 1.3e6) / 1.3e6 < 0.10, n


@pytest.mark.parametrize("rows", [106, 107, 45, 4])
def test_output_shape_and_finite_for_odd_and_even_lengths(rows):
    torch.manual_seed(0)
    net = _randomise_output(UNet1D(3, TINY))
    out = net(torch.randn(3, rows, 3), torch.randn(3))
    assert out.shape == (3, rows, 3)
    assert torch.isfinite(out).all()


def test_output_is_zero_at_initialisation():
    net = UNet1D(5, TINY, cond_dim=2)
    assert torch.equal(net(torch.randn(2, 20, 5), torch.zeros(2), torch.randn(2, 2)), torch.zeros(2, 20, 5))


def test_attention_and_norms_do_not_mix_crystals_of_a_batch():
    torch.manual_seed(0)
    net = _randomise_output(UNet1D(5, TINY, cond_dim=1)).eval()
    x, c_noise, cond = torch.randn(4, 106, 5), torch.randn(4), torch.randn(4, 1)
    base = net(x, c_noise, cond)
    x2 = x.clone()
    x2[2] = torch.randn(106, 5) * 3
    changed = net(x2, c_noise, cond)
    keep = [0, 1, 3]
    torch.testing.assert_close(changed[keep], base[keep], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(changed[2], base[2])
    # a crystal alone gives the same output as inside the batch
    torch.testing.assert_close(net(x[1:2], c_noise[1:2], cond[1:2]), base[1:2], rtol=1e-5, atol=1e-6)


def test_nan_condition_uses_the_null_embedding_like_no_condition():
    torch.manual_seed(0)
    net = _randomise_output(UNet1D(5, TINY, cond_dim=2))
    with torch.no_grad():
        net.null_cond.normal_()
    x, c_noise = torch.randn(3, 30, 5), torch.randn(3)
    cond = torch.tensor([[0.5, -1.0], [float("nan"), float("nan")], [1.0, 2.0]])
    out = net(x, c_noise, cond)
    uncond = net(x, c_noise)
    torch.testing.assert_close(out[1], uncond[1])
    assert not torch.allclose(out[0], uncond[0])


def test_bad_conditions_raise():
    with pytest.raises(ValueError, match="without conditioning"):
        UNet1D(5, TINY)(torch.randn(2, 10, 5), torch.zeros(2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="cond must have shape"):
        UNet1D(5, TINY, cond_dim=2)(torch.randn(2, 10, 5), torch.zeros(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="expected x of shape"):
        UNet1D(5, TINY)(torch.randn(2, 10, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(channels=10, groups=4)


def test_sinusoidal_embedding_hand_values():
    emb = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4)
    # frequencies 1 and 10000^(-1/2) = 0.01
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0],
                             [math.cos(1.0), math.cos(0.01), math.sin(1.0), math.sin(0.01)]])
    torch.testing.assert_close(emb, expected)
    assert sinusoidal_embedding(torch.zeros(3), 5).shape == (3, 5)
