"""GDSS as an SDE system: the two score networks, the score-function wrapper and the training loss (the run
configuration is :mod:`graphgen.config`, re-exported here).

GDSS (Jo et al., 2022) diffuses node features X (B, N, F) and a symmetric adjacency A (B, N, N) with one SDE
each; two networks see the same noisy pair (X_t, A_t) and predict one score each. For VP / sub-VP SDEs the
networks predict the noise, score = -net / std(t); for VE they predict the score directly. In GDSS configs
``beta_min`` / ``beta_max`` of a VE SDE are its ``sigma_min`` / ``sigma_max``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphgen.config import (DataConfig, GraphGenConfig, NetworkConfig, SamplerConfig, SDEConfig,  # noqa: F401
                             SDEPairConfig, TrainConfig)
from graphgen.models import ScoreNetworkA, ScoreNetworkX, ScoreNetworkX_GMH
from shared.losses import system_dsm_loss
from shared.numerics import network_autocast
from shared.sde import SDE, VESDE, VPSDE, SubVPSDE
from shared.system import Component, SDESystem

__all__ = [
    "SDEConfig",
    "SDEPairConfig",
    "DataConfig",
    "NetworkConfig",
    "TrainConfig",
    "SamplerConfig",
    "GraphGenConfig",
    "GraphScoreModel",
    "build_sde",
    "build_system",
    "build_model",
    "gdss_score_fn",
    "gdss_loss",
    "make_loss_fn",
]


def __getattr__(name: str):
    if name == "MOLECULE_DATASETS":  # dataset name -> atom types, read from the registry (graphgen.datasets)
        from graphgen.dataset_registry import DATASETS

        return {key: spec.atoms for key, spec in DATASETS.items() if spec.atoms is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_sde(cfg: SDEConfig) -> SDE:
    if cfg.type == "VP":
        return VPSDE(cfg.beta_min, cfg.beta_max, cfg.num_scales)
    if cfg.type == "subVP":
        return SubVPSDE(cfg.beta_min, cfg.beta_max, cfg.num_scales)
    if cfg.type == "VE":
        return VESDE(cfg.beta_min, cfg.beta_max, cfg.num_scales)
    raise ValueError(f"unknown SDE type {cfg.type!r}; choose VP, VE or subVP")


def build_system(cfg: GraphGenConfig | SDEPairConfig) -> SDESystem:
    """``{"x": node features (masked rows), "adj": symmetric adjacency (masked rows and columns)}``."""
    pair = cfg.sde if isinstance(cfg, GraphGenConfig) else cfg
    return SDESystem({"x": Component(build_sde(pair.x)), "adj": Component(build_sde(pair.adj), symmetric=True)})


class GraphScoreModel(nn.Module):
    """The two GDSS networks as one module (one optimiser, one EMA): ``x_net`` and ``adj_net``."""

    def __init__(self, x_net: nn.Module, adj_net: nn.Module, time_conditioned: bool = False):
        super().__init__()
        self.x_net, self.adj_net, self.time_conditioned = x_net, adj_net, time_conditioned

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Raw network outputs (not yet scores) for the noisy pair at time ``t``."""
        tt = t if self.time_conditioned else None
        return self.x_net(x, adj, flags, tt), self.adj_net(x, adj, flags, tt)

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters of either network that no output depends on (see ``ScoreNetworkA.unused_parameters``)."""
        return [p for net in (self.x_net, self.adj_net) for p in getattr(net, "unused_parameters", list)()]


def build_model(cfg: GraphGenConfig) -> GraphScoreModel:
    m, d = cfg.model, cfg.data
    tc = dict(time_conditioned=True, time_dim=m.time_dim) if m.time_conditioned else {}
    if m.x == "ScoreNetworkX":
        x_net = ScoreNetworkX(d.max_feat_num, m.depth, m.nhid, **tc)
    else:
        if m.time_conditioned:
            raise ValueError("model.time_conditioned is not available for ScoreNetworkX_GMH")
        x_net = ScoreNetworkX_GMH(d.max_feat_num, m.depth, m.nhid, m.num_linears, m.c_init, m.c_hid, m.c_final,
                                  m.adim, m.num_heads, m.conv)
    adj_net = ScoreNetworkA(d.max_feat_num, d.max_node_num, m.nhid, m.num_layers, m.num_linears, m.c_init, m.c_hid,
                            m.c_final, m.adim, m.num_heads, m.conv, **tc)
    return GraphScoreModel(x_net, adj_net, m.time_conditioned)


def _to_score(out: Tensor, sde: SDE, t: Tensor) -> Tensor:
    if isinstance(sde, VESDE):
        return out
    # VP / sub-VP networks predict noise; the score is -noise / std (GDSS get_score_fn)
    return -out / sde.marginal_std(t).reshape(-1, *([1] * (out.dim() - 1)))


def gdss_score_fn(model: nn.Module, system: SDESystem, precision: str = "fp32"):
    """System score ``score_fn(state, t, mask) -> {"x", "adj"}``: both networks on the same (x_t, adj_t).

    ``precision`` "bf16" (or "auto" on hardware with native bf16) runs the networks under bf16 autocast; their
    outputs return to the state's dtype before they become scores, so the integrator stays in fp32."""

    def score_fn(state: dict[str, Tensor], t: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        x, adj = state["x"], state["adj"]
        flags = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype) if mask is None else mask.to(x.dtype)
        with network_autocast(precision, x.device):
            out_x, out_adj = model(x, adj, flags, t)
        out_x, out_adj = out_x.to(x.dtype), out_adj.to(adj.dtype)
        return {"x": _to_score(out_x, system["x"].sde, t), "adj": _to_score(out_adj, system["adj"].sde, t)}

    return score_fn


def gdss_loss(model: nn.Module, system: SDESystem, batch: dict[str, Tensor], generator: torch.Generator | None,
              eps: float = 1e-5) -> tuple[Tensor, dict[str, Tensor]]:
    """GDSS loss: t ~ U(eps, T), 0.5 * sum over entries of (score * std + z)^2 per sample, batch mean, X + A.

    Returns ``(loss_x + loss_adj, {"loss_x", "loss_adj"})``. Padded nodes get no noise and contribute nothing
    (the networks mask their outputs, so the sum over all entries equals the sum over real ones).
    """
    flags = batch["flags"]
    state0 = system.apply_mask({"x": batch["x"], "adj": batch["adj"]}, flags)
    per_sample = system_dsm_loss(gdss_score_fn(model, system), state0, system, weighting="sigma2", mask=flags,
                                 reduce_mean=False, generator=generator, eps=eps)
    loss_x, loss_adj = 0.5 * per_sample["x"].mean(), 0.5 * per_sample["adj"].mean()
    return loss_x + loss_adj, {"loss_x": loss_x.detach(), "loss_adj": loss_adj.detach()}


def make_loss_fn(system: SDESystem, eps: float = 1e-5):
    """``loss_fn(model, batch, generator)`` for :class:`shared.training.Trainer`."""

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator):
        return gdss_loss(model, system, batch, generator, eps)

    return loss_fn
