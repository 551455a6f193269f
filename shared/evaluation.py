"""Evaluators: named metric functions over generated samples, run together with an honest account of what was
skipped (missing reference data, optional package not installed) instead of silently dropping metrics.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EvaluationReport",
    "EvaluationSkipped",
    "Evaluator",
    "MissingDependency",
    "evaluator",
    "require_package",
    "run_evaluators",
]


class MissingDependency(ImportError):
    """An optional package an evaluator (or hook) needs is not installed."""

    def __init__(self, package: str, extra: str | None = None):
        hint = f"pip install 'scoregen[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"optional package {package!r} is not installed ({hint})")
        self.package = package
        self.extra = extra


class EvaluationSkipped(Exception):
    """Raised by an evaluator that cannot run in this context for a reason its static ``requires`` cannot
    express (e.g. a key needed only when another option is absent); the report lists the message as the reason."""


def require_package(module: str, extra: str | None = None) -> Any:
    """``importlib.import_module(module)``, raising MissingDependency (with the install hint) if it is absent."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # only a missing *top-level* package is a missing dependency; a broken install is a real error
        if isinstance(exc, ModuleNotFoundError) and exc.name == module.split(".")[0]:
            raise MissingDependency(module.split(".")[0], extra) from exc
        raise


@runtime_checkable
class Evaluator(Protocol):
    name: str
    requires: frozenset[str]

    def __call__(self, generated: Any, context: dict) -> dict[str, float]: ...


class FunctionEvaluator:
    """An Evaluator made from a plain function by the ``evaluator`` decorator."""

    def __init__(self, fn: Callable[[Any, dict], Mapping[str, float]], name: str, requires: Iterable[str]):
        _check_signature(name, requires)
        self.fn = fn
        self.name = name
        self.requires = frozenset(requires)
        functools.update_wrapper(self, fn)

    def __call__(self, generated: Any, context: dict) -> dict[str, float]:
        return dict(self.fn(generated, context))

    def __repr__(self) -> str:
        return f"evaluator({self.name!r}, requires={sorted(self.requires)})"


def evaluator(name: str, requires: Iterable[str] = ()) -> Callable[[Callable], FunctionEvaluator]:
    """Decorator: ``@evaluator("validity", requires={"train_smiles"})`` over ``fn(generated, context) -> dict``."""

    _check_signature(name, requires)

    def wrap(fn: Callable) -> FunctionEvaluator:
        return FunctionEvaluator(fn, name, requires)

    return wrap


def _check_signature(name: str, requires: Iterable[str]) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"evaluator name must be a non-empty string, got {name!r}")
    if isinstance(requires, str):  # a lone string would silently become a set of characters
        raise TypeError(f"requires of evaluator {name!r} must be a collection of keys, not a string")


@dataclass
class EvaluationReport:
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # evaluator name -> why it did not run

    def to_dict(self) -> dict:
        return {"metrics": dict(self.metrics), "skipped": dict(self.skipped)}


def run_evaluators(evaluators: Iterable[Evaluator], generated: Any, context: Mapping[str, Any]) -> EvaluationReport:
    """Run every evaluator whose required context keys are present (a key set to None counts as missing).

    Evaluators raising MissingDependency are reported as skipped; any other exception propagates, since it is
    a bug or bad data rather than an expected gap. Metric names must be unique across evaluators.
    """
    report = EvaluationReport()
    producer: dict[str, str] = {}  # metric -> evaluator that produced it
    seen: set[str] = set()
    for ev in evaluators:
        if ev.name in seen:
            raise ValueError(f"two evaluators are named {ev.name!r}; names must be unique")
        seen.add(ev.name)
        missing = sorted(key for key in ev.requires if context.get(key) is None)
        if missing:
            report.skipped[ev.name] = f"missing context: {', '.join(missing)}"
            continue
        try:
            values = ev(generated, dict(context))
        except (MissingDependency, EvaluationSkipped) as exc:
            report.skipped[ev.name] = str(exc)
            continue
        if not isinstance(values, Mapping):
            raise TypeError(f"evaluator {ev.name!r} returned {type(values).__name__}, expected a dict")
        for metric, value in values.items():
            if metric in producer:
                raise ValueError(
                    f"metric {metric!r} is produced by both {producer[metric]!r} and {ev.name!r}"
                )
            report.metrics[metric] = _as_float(value, ev.name, metric)
            producer[metric] = ev.name
    return report


def _as_float(value: Any, name: str, metric: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"evaluator {name!r} returned a non-numeric value for {metric!r}: {value!r}"
        ) from None
