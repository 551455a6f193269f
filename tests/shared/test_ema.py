"""EMA of weights against hand-computed averages; swap/copy/state round trips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.training import EMA


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.register_buffer("count", torch.tensor(0))


def _set(model: Tiny, values: list[float], count: int) -> None:
    with torch.no_grad():
        model.w.copy_(torch.tensor(values))
        model.count.fill_(count)


def test_hand_computed_average():
    model = Tiny()
    ema = EMA(model, decay=0.5)
    _set(model, [3.0, 6.0], 1)
    ema.update()  # 0.5 * [1, 2] + 0.5 * [3, 6] = [2, 4]
    _set(model, [0.0, 0.0], 2)
    ema.update()  # 0.5 * [2, 4] = [1, 2]
    torch.testing.assert_close(ema.shadow["w"], torch.tensor([1.0, 2.0]))
    assert int(ema.buffers["count"]) == 2  # buffers are copied, not averaged
    assert ema.num_updates == 2


def test_warmup_decay_schedule():
    model = Tiny()
    ema = EMA(model, decay=0.9, warmup=True)
    # (1 + n) / (10 + n): 0.1, 2/11, 3/12 ... capped at 0.9
    expected = [min(0.9, (1 + n) / (10 + n)) for n in range(100)]
    got = []
    for _ in range(100):
        got.append(ema.current_decay())
        ema.update()
    assert got == pytest.approx(expected)
    assert got[-1] == 0.9
    # first update with decay 0.1 almost forgets the initial value
    model2 = Tiny()
    ema2 = EMA(model2, decay=0.999, warmup=True)
    _set(model2, [11.0, 12.0], 0)
    ema2.update()
    torch.testing.assert_close(ema2.shadow["w"], 0.1 * torch.tensor([1.0, 2.0]) + 0.9 * torch.tensor([11.0, 12.0]))


def test_swap_and_copy_to():
    model = Tiny()
    ema = EMA(model, decay=0.0)  # decay 0: shadow = latest weights
    _set(model, [5.0, 7.0], 3)
    ema.update()
    _set(model, [-1.0, -1.0], 4)
    with ema.swap() as swapped:
        assert swapped is model
        torch.testing.assert_close(model.w.detach(), torch.tensor([5.0, 7.0]))
        assert int(model.count) == 3
    torch.testing.assert_close(model.w.detach(), torch.tensor([-1.0, -1.0]))
    assert int(model.count) == 4
    other = Tiny()
    ema.copy_to(other)
    torch.testing.assert_close(other.w.detach(), torch.tensor([5.0, 7.0]))


def test_swap_restores_after_exception():
    model = Tiny()
    ema = EMA(model, decay=0.5)
    _set(model, [9.0, 9.0], 0)
    with pytest.raises(RuntimeError), ema.average_parameters(model):
        raise RuntimeError("boom")
    torch.testing.assert_close(model.w.detach(), torch.tensor([9.0, 9.0]))


def test_state_dict_round_trip_and_mismatch():
    model = Tiny()
    ema = EMA(model, decay=0.7, warmup=True)
    _set(model, [2.0, 3.0], 1)
    ema.update()
    restored = EMA(Tiny(), decay=0.1)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.shadow["w"], ema.shadow["w"])
    assert (restored.decay, restored.warmup, restored.num_updates) == (0.7, True, 1)
    with pytest.raises(ValueError, match="EMA shadow names differ"):
        EMA(nn.Linear(2, 2)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.5)


def test_tracks_empty_sequential_and_linear():
    lin = nn.Sequential(nn.Linear(3, 2))
    ema = EMA(lin, decay=0.25)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(4.0)
    ema.update()
    for name, value in ema.shadow.items():
        torch.testing.assert_close(value, before[name] + 0.75 * 4.0)
    EMA(nn.Sequential()).update()  # no parameters: nothing to do, no error
