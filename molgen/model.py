"""The generator's network: a geometry-complete SE(3)-equivariant GVP message-passing network (FlowMol2 family).

Every atom carries scalars ``s`` (A, S) and vectors ``v`` (A, V, 3); every unordered atom pair of a molecule carries
edge (bond) features ``e`` (E, F). One layer:

1. messages on the directed pairs ``j -> i`` from ``[s_i, s_j, e_ij, RBF(d_ij)]`` and
   ``[v_j, (x_i - x_j) / (d_ij + 1)]``
   through a stack of GVPs, summed over each atom's neighbours and divided by a constant (a mean would hide the
   number of atoms, which the composition depends on);
2. residual node update (GVP + scalar/vector layer norms) and a GVP feed-forward block;
3. position update ``x_i += GVP(s_i, v_i)`` (one vector), centre of mass removed per molecule;
4. symmetric edge update ``e_ij += MLP([s_i + s_j, s_i * s_j, e_ij, RBF(d_ij)])``.

First linear maps over concatenated atom and edge features are split by block, so atom parts are computed once
per atom and gathered (``index_select``, whose backward is a fast ``index_add``), not once per edge.

Geometric vector perceptrons (Jing et al. 2021) with vector gating; ``cross=True`` adds cross products of hidden
vector channels (GCPNet-style), which are pseudovectors: the network is then equivariant to rotations but *not* to
reflections, so it can tell a molecule from its mirror image. Scalars depend on vectors only through norms, so
logits are invariant under rotations and translations and every output is permutation-equivariant.

Inputs and outputs are dense padded tensors (``B`` molecules, ``N`` slots, ``mask`` (B, N)); inside, the real atoms
are packed into one flat graph (torch-geometric style, ``batch`` vector, ``scatter``) and the pairs are enumerated
with ``triu_indices`` plus per-molecule offsets, no compiled neighbour search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from molgen.conditioning import ConditionEmbedding, ConditioningConfig

__all__ = ["FlowNetConfig", "GVP", "GVPLayerNorm", "MolFlowNet", "pair_index"]


@dataclass
class FlowNetConfig:
    num_layers: int = 4
    scalars: int = 128
    vectors: int = 16
    edge_features: int = 32
    rbf: int = 16
    rbf_max: float = 14.0  # Angstrom; RBF centres span [0, rbf_max]
    message_gvps: int = 2  # GVPs per message function
    message_norm: float = 10.0  # messages are summed and divided by this (a mean would hide the atom count)
    cross: bool = True  # cross-product features (SE(3), not E(3))
    update_positions_every: int = 1  # position update after every k-th layer (always after the last)
    num_atom_types: int = 5
    num_charges: int = 3
    num_bond_types: int = 5  # including "no bond"
    time_features: int = 16
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)

    def __post_init__(self) -> None:
        if min(self.num_layers, self.scalars, self.vectors, self.edge_features, self.rbf, self.message_gvps) < 1:
            raise ValueError(f"network sizes must be positive: {self}")
        if self.update_positions_every < 1:
            raise ValueError("update_positions_every must be >= 1")
        if isinstance(self.conditioning, dict):
            self.conditioning = ConditioningConfig(**self.conditioning)


# --- building blocks --------------------------------------------------------------------------------------------


def _vnorm(v: Tensor, eps: float = 1e-8) -> Tensor:
    """Norms of vector channels (..., C, 3) -> (..., C), differentiable at zero."""
    return torch.sqrt((v * v).sum(-1) + eps)


class GVP(nn.Module):
    """Geometric vector perceptron ``(s, v) -> (s', v')`` with vector gating and optional cross-product channels."""

    def __init__(self, in_s: int, in_v: int, out_s: int, out_v: int, hidden_v: int | None = None,
                 activation: bool = True, cross: bool = False):
        super().__init__()
        hidden_v = hidden_v or max(in_v, out_v)
        self.hidden_v, self.cross, self.out_v = hidden_v, cross and hidden_v >= 2, out_v
        self.w_h = nn.Linear(in_v, hidden_v, bias=False)
        n_cross = hidden_v // 2 if self.cross else 0
        self.w_s = nn.Linear(in_s + hidden_v + n_cross, out_s)
        if out_v:
            self.w_u = nn.Linear(hidden_v + n_cross, out_v, bias=False)
            self.w_g = nn.Linear(out_s, out_v)
        self.act = nn.SiLU() if activation else nn.Identity()

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        vh = self.w_h(v.transpose(-1, -2)).transpose(-1, -2)  # (A, H, 3)
        if self.cross:
            k = self.hidden_v // 2
            vh = torch.cat([vh, torch.linalg.cross(vh[..., :k, :], vh[..., k:2 * k, :], dim=-1)], -2)
        s_out = self.w_s(torch.cat([s, _vnorm(vh)], -1))
        if not self.out_v:
            return self.act(s_out), v.new_zeros(*v.shape[:-2], 0, 3)
        v_out = self.w_u(vh.transpose(-1, -2)).transpose(-1, -2)
        gate = torch.sigmoid(self.w_g(self.act(s_out) if isinstance(self.act, nn.SiLU) else s_out))
        return self.act(s_out), v_out * gate.unsqueeze(-1)


class GVPLayerNorm(nn.Module):
    """LayerNorm on scalars; vectors divided by the root-mean-square of their channel norms (equivariant)."""

    def __init__(self, scalars: int):
        super().__init__()
        self.norm = nn.LayerNorm(scalars)

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        rms = torch.sqrt((v * v).sum(-1).mean(-1, keepdim=True) + 1e-8).unsqueeze(-1)
        return self.norm(s), v / rms


class _GVPStack(nn.Sequential):
    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        for module in self:
            s, v = module(s, v)
        return s, v


def _stack(in_s: int, in_v: int, out_s: int, out_v: int, depth: int, cross: bool) -> _GVPStack:
    layers = []
    for k in range(depth):
        last = k == depth - 1
        layers.append(GVP(in_s if k == 0 else out_s, in_v if k == 0 else out_v, out_s, out_v,
                          activation=not last, cross=cross))
    return _GVPStack(*layers)


class RadialBasis(nn.Module):
    def __init__(self, count: int, maximum: float):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, maximum, count))
        self.gamma = 1.0 / (2.0 * (maximum / max(count - 1, 1)) ** 2)

    def forward(self, d: Tensor) -> Tensor:
        return torch.exp(-self.gamma * (d.unsqueeze(-1) - self.centres) ** 2)


def pair_index(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All unordered pairs ``i < j`` of real atoms of each molecule, from ``triu_indices`` and per-molecule offsets.

    Returns ``(b, i, j)``: molecule and slot indices into the dense (B, N) layout, ordered by molecule.
    """
    bsz, n = mask.shape
    iu, ju = torch.triu_indices(n, n, offset=1, device=mask.device)
    real = mask[:, iu] & mask[:, ju]  # (B, P)
    b, p = real.nonzero(as_tuple=True)
    return b, iu[p], ju[p]


def _time_features(t: Tensor, count: int) -> Tensor:
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), count // 2, device=t.device, dtype=t.dtype))
    angles = t.unsqueeze(-1) * freqs * math.pi
    return torch.cat([torch.sin(angles), torch.cos(angles)], -1)


# --- the network -------------------------------------------------------------------------------------------------


class _Layer(nn.Module):
    def __init__(self, c: FlowNetConfig, update_positions: bool):
        super().__init__()
        s, v, f = c.scalars, c.vectors, c.edge_features
        # the first linear map of [s_i, s_j, e_ij, rbf_ij] is split by block so the atom parts run once per atom
        # rather than once per edge (the same function, a fraction of the cost)
        self.msg_dst, self.msg_src = nn.Linear(s, s), nn.Linear(s, s, bias=False)
        self.msg_edge = nn.Linear(f + c.rbf, s, bias=False)
        self.message = _stack(s, v + 1, s, v, c.message_gvps, c.cross)
        self.message_norm = float(c.message_norm)
        self.norm1, self.norm2 = GVPLayerNorm(s), GVPLayerNorm(s)
        self.update = _stack(s, v, s, v, 2, c.cross)
        self.position = GVP(s, v, s // 2, 1, activation=False, cross=c.cross) if update_positions else None
        self.edge_sum, self.edge_prod = nn.Linear(s, f), nn.Linear(s, f, bias=False)
        self.edge_in = nn.Linear(f + c.rbf, f, bias=False)
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(f, f))
        self.edge_norm = nn.LayerNorm(f)

    def forward(self, s, v, e, x, graph):
        src, dst, pair_of_dir, batch, num_mols, rbf_fn = graph
        diff = x.index_select(0, dst) - x.index_select(0, src)  # directed j -> i: x_i - x_j
        dist = torch.sqrt((diff * diff).sum(-1) + 1e-8)
        edge_part = self.msg_edge(torch.cat([e.index_select(0, pair_of_dir), rbf_fn(dist)], -1))
        m_in = self.msg_dst(s).index_select(0, dst) + self.msg_src(s).index_select(0, src) + edge_part
        m_s, m_v = self.message(m_in, torch.cat([v.index_select(0, src),
                                                 (diff / (dist + 1.0).unsqueeze(-1)).unsqueeze(-2)], -2))
        n_atoms = s.shape[0]
        agg_s = scatter(m_s, dst, 0, dim_size=n_atoms, reduce="sum") / self.message_norm
        agg_v = scatter(m_v, dst, 0, dim_size=n_atoms, reduce="sum") / self.message_norm
        s, v = self.norm1(s + agg_s, v + agg_v)
        ds, dv = self.update(s, v)
        s, v = self.norm2(s + ds, v + dv)
        if self.position is not None:
            _, dx = self.position(s, v)
            x = x + dx[:, 0]
            x = x - scatter(x, batch, 0, dim_size=num_mols, reduce="mean").index_select(0, batch)
        # edges live on unordered pairs: the first direction of each pair names its two atoms
        half = e.shape[0]
        i, j = dst[:half], src[:half]
        d_pair = torch.sqrt(((x.index_select(0, i) - x.index_select(0, j)) ** 2).sum(-1) + 1e-8)
        s_i, s_j = s.index_select(0, i), s.index_select(0, j)
        summed = self.edge_sum(s)
        h = summed.index_select(0, i) + summed.index_select(0, j) + self.edge_prod(s_i * s_j)
        h = h + self.edge_in(torch.cat([e, rbf_fn(d_pair)], -1))
        e = self.edge_norm(e + self.edge_out(h))
        return s, v, e, x


class MolFlowNet(nn.Module):
    """Predicts clean positions and logits of atom types, charges and bonds from a noisy molecule at time t.

    ``forward(state, t, cond=None)`` with ``state`` a dict of dense tensors: ``positions`` (B, N, 3),
    ``atom_types`` (B, N), ``charges`` (B, N) and ``bonds`` (B, N, N) as integer states that include the mask token
    (index = number of classes), and ``mask`` (B, N) bool. ``cond`` is ``None`` or a dict ``values`` (B, P) /
    ``present`` (B, P) of normalised property values. Returns ``positions`` (B, N, 3) (with the input's centre of
    mass, zero on padding), ``atom_types`` (B, N, K), ``charges`` (B, N, C) and ``bonds`` (B, N, N, Kb) logits
    (symmetric in the two atom slots).
    """

    def __init__(self, config: FlowNetConfig | None = None):
        super().__init__()
        self.config = c = config or FlowNetConfig()
        s, f = c.scalars, c.edge_features
        self.atom_in = nn.Linear((c.num_atom_types + 1) + (c.num_charges + 1) + c.time_features, s)
        self.bond_in = nn.Linear(c.num_bond_types + 1 + c.time_features, f)
        self.cond = ConditionEmbedding(c.conditioning, s, c.num_layers) if c.conditioning.properties else None
        self.cond_every_layer = self.cond is not None and c.conditioning.where == "every_layer"
        self.rbf = RadialBasis(c.rbf, c.rbf_max)
        self.layers = nn.ModuleList(
            _Layer(c, update_positions=(k + 1) % c.update_positions_every == 0 or k == c.num_layers - 1)
            for k in range(c.num_layers))
        self.type_head = nn.Sequential(nn.Linear(s, s), nn.SiLU(), nn.Linear(s, c.num_atom_types))
        self.charge_head = nn.Sequential(nn.Linear(s, s), nn.SiLU(), nn.Linear(s, c.num_charges))
        self.bond_head = nn.Sequential(nn.Linear(f + s + c.rbf, f), nn.SiLU(), nn.Linear(f, c.num_bond_types))

    def forward(self, state: dict[str, Tensor], t: Tensor, cond: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        c = self.config
        mask = state["mask"].bool()
        bsz, n = mask.shape
        flat = mask.reshape(-1).nonzero(as_tuple=True)[0]  # packed real atoms
        batch = flat // n
        slot_to_atom = torch.full((bsz * n,), -1, dtype=torch.long, device=mask.device)
        slot_to_atom[flat] = torch.arange(flat.numel(), device=mask.device)

        pos = state["positions"].reshape(bsz * n, 3)[flat]
        centre = scatter(pos, batch, 0, dim_size=bsz, reduce="mean")
        x = pos - centre[batch]
        tf = _time_features(t.to(pos.dtype), c.time_features)
        types = nn.functional.one_hot(state["atom_types"].reshape(-1)[flat], c.num_atom_types + 1).to(pos.dtype)
        charges = nn.functional.one_hot(state["charges"].reshape(-1)[flat], c.num_charges + 1).to(pos.dtype)
        s = self.atom_in(torch.cat([types, charges, tf[batch]], -1))
        cond_emb = None
        if self.cond is not None:
            cond_emb = self.cond(cond, bsz, pos.dtype, pos.device)[batch]
            s = self.cond.combine(s, cond_emb)
        v = torch.cat([x.unsqueeze(-2), x.new_zeros(x.shape[0], c.vectors - 1, 3)], -2)

        pb, pi, pj = pair_index(mask)
        ai, aj = slot_to_atom[pb * n + pi], slot_to_atom[pb * n + pj]
        bonds = nn.functional.one_hot(state["bonds"][pb, pi, pj], c.num_bond_types + 1).to(pos.dtype)
        e = self.bond_in(torch.cat([bonds, tf[pb]], -1))
        n_pairs = ai.shape[0]
        # directed edges: first (j -> i) for every pair, then (i -> j); both share the pair's edge features
        dst, src = torch.cat([ai, aj]), torch.cat([aj, ai])
        pair_of_dir = torch.arange(n_pairs, device=mask.device).repeat(2)
        graph = (src, dst, pair_of_dir, batch, bsz, self.rbf)
        for k, layer in enumerate(self.layers):
            if k > 0 and self.cond_every_layer:
                s = self.cond.combine(s, cond_emb, layer=k)
            s, v, e, x = layer(s, v, e, x, graph)

        d = torch.sqrt(((x[ai] - x[aj]) ** 2).sum(-1) + 1e-8)
        bond_logits = self.bond_head(torch.cat([e, s[ai] + s[aj], self.rbf(d)], -1))
        out_pos = pos.new_zeros(bsz * n, 3)
        out_pos[flat] = x + centre[batch]
        out_types = pos.new_zeros(bsz * n, c.num_atom_types)
        out_types[flat] = self.type_head(s).to(pos.dtype)  # autocast: heads may run in bf16
        out_charges = pos.new_zeros(bsz * n, c.num_charges)
        out_charges[flat] = self.charge_head(s).to(pos.dtype)
        out_bonds = pos.new_zeros(bsz, n, n, c.num_bond_types)
        bond_logits = bond_logits.to(pos.dtype)
        out_bonds[pb, pi, pj] = bond_logits
        out_bonds[pb, pj, pi] = bond_logits
        return {"positions": out_pos.reshape(bsz, n, 3), "atom_types": out_types.reshape(bsz, n, -1),
                "charges": out_charges.reshape(bsz, n, -1), "bonds": out_bonds}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
