"""The one explicit ODE step the shared samplers use: Euler, or Heun's second-order trapezoidal correction.

Used by EDM's sampler (``shared.edm``, in sigma) and the probability-flow ODE solver
(``shared.samplers``). States are tensors or dicts of tensors.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["heun_step"]


def _axpy(x: Any, h: Any, *terms: tuple[float, Any]) -> Any:
    if isinstance(x, dict):
        return {k: x[k] + h * sum(w * v[k] for w, v in terms) for k in x}
    return x + h * sum(w * v for w, v in terms)


def heun_step(f: Callable[[Any, Any], Any], x: Any, t: Any, t_next: Any, *, heun: bool = True,
              d: Any = None) -> tuple[Any, int]:
    """One step of dx/dt = f(x, t) from ``t`` to ``t_next``: ``(x_next, evaluations)``.

    Euler: x + h f(x, t). Heun: x + h (f(x, t) + f(x_euler, t_next)) / 2 (second order; two evaluations).
    ``d``: f(x, t) when the caller has it already (not counted again)."""
    h = t_next - t
    evaluations = 0
    if d is None:
        d, evaluations = f(x, t), 1
    x_euler = _axpy(x, h, (1.0, d))
    if not heun:
        return x_euler, evaluations
    d_next = f(x_euler, t_next)
    return _axpy(x, h, (0.5, d), (0.5, d_next)), evaluations + 1
