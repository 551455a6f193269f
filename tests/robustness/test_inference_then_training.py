"""Sampling (under torch.inference_mode) and then training in the same process: no cached inference tensors leak."""

import torch

from graphgen.models.layers import _TRIANGLES, PairMLP


def test_pair_indices_cached_while_sampling_serve_training_later():
    _TRIANGLES.clear()
    mlp = torch.nn.Linear(3, 2)
    pairs = torch.randn(2, 3, 5, 5)
    pairs = pairs + pairs.transpose(-1, -2)  # symmetric: the i <= j path that uses the cached indices
    with torch.inference_mode():
        PairMLP.apply(mlp, pairs, symmetric=True)
    out = PairMLP.apply(mlp, pairs.requires_grad_(), symmetric=True)
    out.sum().backward()
    assert pairs.grad is not None and torch.isfinite(pairs.grad).all()
