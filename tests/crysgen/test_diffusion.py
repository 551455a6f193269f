"""EDM set-up on crystal matrices: preconditioning at init, padding handling, masked loss, CFG sampling, NaNs."""

import pytest
import torch

from crysgen.diffusion import CrystalDenoiser, DiffusionConfig, SamplingError, make_loss_fn, sample_matrices
from crysgen.model import UNet1D, UNetConfig
from crysgen.representation import CrystalEncoder

TINY = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, emb_dim=16, attn_heads=2, groups=4)
ENCODER = CrystalEncoder(n_elements=2, max_sites=3)  # width 3: E/O blocks have one padded column


def _denoiser(cond_dim=1, seed=0):
    torch.manual_seed(seed)
    net = UNet1D(ENCODER.width, TINY, cond_dim=cond_dim)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    with torch.no_grad():
        if cond_dim:
            net.null_cond.normal_()
    return CrystalDenoiser(net, torch.as_tensor(ENCODER.padding_mask()))


def test_padding_mask_has_entries_to_mask():
    pad = ENCODER.padding_mask()
    assert pad.any() and not pad.all()


def test_initial_denoiser_is_c_skip_times_x_and_keeps_padding():
    net = UNet1D(ENCODER.width, TINY)  # zero output layer: F = 0
    model = CrystalDenoiser(net, torch.as_tensor(ENCODER.padding_mask()), sigma_data=0.5)
    x, sigma = torch.randn(2, *ENCODER.shape), torch.tensor([0.3, 2.0])
    c_skip = 0.25 / (sigma**2 + 0.25)
    pad = model.padding_mask
    out = model(x, sigma)
    torch.testing.assert_close(out[:, ~pad], c_skip[:, None] * x[:, ~pad])
    assert torch.equal(out[:, pad], x[:, pad])


def test_padding_input_values_do_not_influence_the_rest():
    model = _denoiser()
    pad = model.padding_mask
    x = torch.randn(2, *ENCODER.shape)
    y = x.clone()
    y[:, pad] = torch.randn(2, int(pad.sum())) * 5
    sigma, cond = torch.tensor([0.5, 3.0]), torch.randn(2, 1)
    torch.testing.assert_close(model(x, sigma, cond)[:, ~pad], model(y, sigma, cond)[:, ~pad])


def test_loss_ignores_padding_and_is_deterministic_given_the_generator():
    model = _denoiser()
    loss_fn = make_loss_fn(DiffusionConfig(), model.padding_mask)
    pad = model.padding_mask
    x = torch.rand(16, *ENCODER.shape) * 2 - 1
    x[:, pad] = -1.0
    cond = torch.randn(16, 1)
    a = loss_fn(model, (x, cond), torch.Generator().manual_seed(3))
    x_other = x.clone()
    x_other[:, pad] = 7.0  # garbage in padding: the loss must not see it
    b = loss_fn(model, (x_other, cond), torch.Generator().manual_seed(3))
    assert a.ndim == 0 and torch.isfinite(a)
    torch.testing.assert_close(a, b)
    c = loss_fn(model, (x, cond), torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    # unconditional batches (no property columns) work too
    assert torch.isfinite(make_loss_fn(DiffusionConfig(), pad)(_denoiser(0), (x, torch.zeros(16, 0)),
                                                                  torch.Generator().manual_seed(0)))


def test_cond_dropout_uses_the_null_embedding():
    # with cond_drop=1 every condition is replaced by NaN -> identical to the unconditional loss
    model = _denoiser()
    x = torch.rand(8, *ENCODER.shape) * 2 - 1
    dropped = make_loss_fn(DiffusionConfig(cond_drop=1.0), model.padding_mask)
    a = dropped(model, (x, torch.randn(8, 1)), torch.Generator().manual_seed(0))
    # same noise stream: drop_condition draws 8 uniforms first, so consume them before the unconditional loss
    g = torch.Generator().manual_seed(0)
    torch.rand(8, generator=g)
    plain = make_loss_fn(DiffusionConfig(cond_drop=0.0), model.padding_mask)
    b = plain(model, (x, torch.full((8, 1), float("nan"))), g)
    torch.testing.assert_close(a, b)


def _sample(model, **kwargs):
    cfg = DiffusionConfig(steps=4)
    return sample_matrices(model, 3, ENCODER.shape, cfg, generator=torch.Generator().manual_seed(7), **kwargs)


def test_sampling_is_seeded_and_keeps_padding_at_minus_one():
    model = _denoiser()
    a, b = _sample(model), _sample(model)
    assert torch.equal(a.samples, b.samples)
    assert a.nfe == 2 * 4 - 1  # Heun: two evaluations per step, one on the last step
    assert torch.all(a.samples[:, model.padding_mask] == -1.0)
    assert torch.isfinite(a.samples).all()
    c = sample_matrices(model, 3, ENCODER.shape, DiffusionConfig(steps=4), generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(c.samples[:, ~model.padding_mask], a.samples[:, ~model.padding_mask])


def test_cfg_scale_zero_is_unconditional_and_scale_one_is_conditional():
    model = _denoiser()
    uncond = _sample(model).samples
    guided0 = _sample(model, cond=torch.tensor([1.5]), guidance_scale=0.0).samples
    torch.testing.assert_close(guided0, uncond, rtol=1e-4, atol=1e-4)
    cond1 = _sample(model, cond=torch.tensor([1.5]), guidance_scale=1.0).samples
    assert not torch.allclose(cond1, uncond, atol=1e-3)
    # scale 1 through the CFG formula equals the conditional model (u + 1 * (c - u) = c)
    from shared.guidance import ClassifierFreeGuidance

    x, sigma = torch.randn(3, *ENCODER.shape), torch.full((3,), 0.7)
    cond = torch.full((3, 1), 1.5)
    guided = ClassifierFreeGuidance(model, 1.0, float("nan"), cond=cond)(x, sigma)
    torch.testing.assert_close(guided, model(x, sigma, cond), rtol=1e-5, atol=1e-5)
    strong = _sample(model, cond=torch.tensor([1.5]), guidance_scale=3.0).samples
    assert torch.isfinite(strong).all() and not torch.allclose(strong, cond1, atol=1e-3)


def test_nan_during_sampling_raises_a_clear_error():
    model = _denoiser()
    with torch.no_grad():
        model.net.out.bias.fill_(float("nan"))
    with pytest.raises(SamplingError, match="NaN"):
        _sample(model)


def test_bad_arguments():
    model = _denoiser()
    with pytest.raises(ValueError):
        sample_matrices(model, 0, ENCODER.shape, DiffusionConfig())
    with pytest.raises(ValueError, match="cond must have shape"):
        sample_matrices(model, 3, ENCODER.shape, DiffusionConfig(), cond=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="cond_drop"):
        DiffusionConfig(cond_drop=1.5)


def test_bf16_sampling_stays_close_to_fp32_and_returns_fp32():
    model = _denoiser()
    fp32 = _sample(model)
    bf16 = sample_matrices(model, 3, ENCODER.shape, DiffusionConfig(steps=4),
                           generator=torch.Generator().manual_seed(7), precision="bf16")
    assert bf16.samples.dtype == torch.float32 and bf16.nfe == fp32.nfe
    assert torch.all(bf16.samples[:, model.padding_mask] == -1.0)
    real = ~model.padding_mask
    diff = (bf16.samples[:, real] - fp32.samples[:, real]).abs().max()
    assert 0 < float(diff) < 0.1  # the same noise draws; only the network's rounding differs
