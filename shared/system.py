"""Systems of SDEs over a dict state, e.g. node features X (B, N, F) and a symmetric adjacency A (B, N, N).

A node ``mask`` of shape (B, N) (1 = real node) zeroes padded rows of node-indexed components and, for
symmetric components, padded rows and columns. Symmetric components get symmetric noise with a zero
diagonal whose off-diagonal entries are N(0, 1), as in GDSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from shared.sde import SDE, expand_like

__all__ = ["Component", "SDESystem", "sym_randn", "sym_randn_like", "mask_nodes", "mask_symmetric"]

State = dict[str, Tensor]


def sym_randn(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Gaussian noise symmetric in the last two (square) dims: upper triangle mirrored, zero diagonal."""
    shape = tuple(shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"symmetric noise needs square last two dims, got shape {shape}")
    if device is None and generator is not None:
        device = generator.device
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype).triu(1)
    return z + z.transpose(-1, -2)


def sym_randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return sym_randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _check_mask(mask: Tensor, x: Tensor, node_dims: tuple[int, ...], name: str) -> Tensor:
    if mask.dim() != 2 or mask.shape[0] != x.shape[0] or any(x.shape[d] != mask.shape[1] for d in node_dims):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit component {name!r} of shape {tuple(x.shape)} "
            f"(expected (B, N) with B = dim 0 and N = dims {node_dims})"
        )
    return mask.to(device=x.device, dtype=x.dtype)


def mask_nodes(x: Tensor, mask: Tensor | None, name: str = "x") -> Tensor:
    """Zero the padded rows (dim 1) of a node-indexed tensor (B, N, ...)."""
    if mask is None:
        return x
    m = _check_mask(mask, x, (1,), name)
    return x * m.reshape(*m.shape, *([1] * (x.dim() - 2)))


def mask_symmetric(x: Tensor, mask: Tensor | None, name: str = "adj") -> Tensor:
    """Zero padded rows and columns of the last two dims of (B, ..., N, N)."""
    if mask is None:
        return x
    m = _check_mask(mask, x, (x.dim() - 2, x.dim() - 1), name)
    lead = [1] * (x.dim() - 3)
    return x * m.reshape(m.shape[0], *lead, -1, 1) * m.reshape(m.shape[0], *lead, 1, -1)


@dataclass(frozen=True)
class Component:
    """One variable of a system: its SDE, whether it is a symmetric matrix, whether the node mask applies."""

    sde: SDE
    symmetric: bool = False
    masked: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sde, SDE):
            raise ValueError(f"Component needs an SDE, got {type(self.sde).__name__}")

    def apply_mask(self, x: Tensor, mask: Tensor | None, name: str = "x") -> Tensor:
        if mask is None or not self.masked:
            return x
        return mask_symmetric(x, mask, name) if self.symmetric else mask_nodes(x, mask, name)

    def noise(
        self,
        shape: Sequence[int],
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        name: str = "x",
    ) -> Tensor:
        """Standard noise for this component (symmetric if needed), masked."""
        if self.symmetric:
            z = sym_randn(shape, generator, device, dtype)
        else:
            if device is None and generator is not None:
                device = generator.device
            z = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return self.apply_mask(z, mask, name)


class SDESystem(Mapping[str, Component]):
    """Named components sharing the batch dim (and the time grid: one T for all)."""

    def __init__(self, components: Mapping[str, Component | SDE]):
        if not components:
            raise ValueError("SDESystem needs at least one component")
        self.components: dict[str, Component] = {
            k: c if isinstance(c, Component) else Component(c) for k, c in components.items()
        }
        Ts = {c.sde.T for c in self.components.values()}
        if len(Ts) != 1:
            raise ValueError(f"all components of a system must share T, got {sorted(Ts)}")
        self.T: float = Ts.pop()

    def __getitem__(self, key: str) -> Component:
        return self.components[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def __repr__(self) -> str:
        return f"SDESystem({self.components!r})"

    @property
    def eps(self) -> float:
        """The largest component eps: the smallest time at which every component is safe to evaluate."""
        return max(c.sde.eps for c in self.components.values())

    def check_state(self, state: Mapping[str, Tensor], what: str = "state") -> None:
        if set(state) != set(self.components):
            raise ValueError(f"{what} has keys {sorted(state)}, the system has {sorted(self.components)}")
        batch = {v.shape[0] for v in state.values()}
        if len(batch) != 1:
            raise ValueError(f"{what} tensors must share the batch dim 0, got sizes {sorted(batch)}")

    def apply_mask(self, state: Mapping[str, Tensor], mask: Tensor | None) -> State:
        return {k: self.components[k].apply_mask(v, mask, k) for k, v in state.items()}

    def noise_like(
        self, state: Mapping[str, Tensor], mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> State:
        """Masked standard noise for every component (symmetric where the component is)."""
        return {
            k: c.noise(state[k].shape, mask, generator, state[k].device, state[k].dtype, k)
            for k, c in self.components.items()
        }

    def prior_sample(
        self,
        shapes: Mapping[str, Sequence[int]],
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """Draw every component from its SDE's prior (symmetric and masked where needed)."""
        if set(shapes) != set(self.components):
            raise ValueError(f"shapes has keys {sorted(shapes)}, the system has {sorted(self.components)}")
        return {
            k: c.sde.prior_std * c.noise(shapes[k], mask, generator, device, dtype, k)
            for k, c in self.components.items()
        }

    def marginal_sample(
        self,
        state0: Mapping[str, Tensor],
        t: Tensor,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[State, State]:
        """(x_t, noise) with x_t = m(t) x0 + std(t) noise per component; both masked, noise symmetric as needed."""
        self.check_state(state0, "state0")
        noise = self.noise_like(state0, mask, generator)
        out = {}
        for k, c in self.components.items():
            mean, std = c.sde.marginal(state0[k], t)
            out[k] = c.apply_mask(mean + expand_like(std, mean) * noise[k], mask, k)
        return out, noise
