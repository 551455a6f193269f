"""Subnormal flushing: only subnormal entries change, results move by less than float32's smallest normal."""

import pytest
import torch
from torch import nn

from shared.numerics import flush_denormal_mode, flush_denormals_

TINY = torch.finfo(torch.float32).tiny


def test_flush_denormals_zeroes_exactly_the_subnormal_entries():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e-40, -3e-39, 0.5, 0.0]] * 3))
        layer.bias.copy_(torch.tensor([TINY, -TINY / 2, 2.0]))
    layer.register_buffer("steps", torch.tensor([1, 2]))  # integer buffers are left alone
    x = torch.randn(5, 4)
    before = layer(x)
    assert flush_denormals_(layer) == 3 * 2 + 1
    assert torch.equal(layer.weight[:, :2], torch.zeros(3, 2))
    assert torch.equal(layer.weight[:, 2], torch.full((3,), 0.5))
    assert layer.bias.tolist() == [TINY, 0.0, 2.0]  # the smallest normal number stays
    assert (layer(x) - before).abs().max() <= TINY
    assert flush_denormals_(layer) == 0


def test_flush_denormal_mode_is_scoped():
    x = torch.tensor([TINY])
    with flush_denormal_mode():
        inside = (x / 4).item()
    outside = (x / 4).item()
    if torch.set_flush_denormal(False):  # only meaningful where the CPU supports the mode
        assert inside == 0.0 and outside == TINY / 4
    with flush_denormal_mode(enabled=False):
        assert (x / 4).item() == TINY / 4


def test_precision_resolution_and_autocast():
    from shared.numerics import native_bf16, network_autocast, resolve_precision

    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if native_bf16("cpu") else "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half")
    a = torch.randn(8, 8)
    with network_autocast("bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with network_autocast("fp32"):
        assert (a @ a).dtype == torch.float32
