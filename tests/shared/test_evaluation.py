"""run_evaluators: metrics computed where the context allows, the rest reported as skipped with a reason."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.evaluation import (
    EvaluationReport,
    Evaluator,
    MissingDependency,
    evaluator,
    require_package,
    run_evaluators,
)


@evaluator("mean")
def mean_value(generated, context):
    """Mean of the generated numbers."""
    return {"mean": float(np.mean(generated))}


@evaluator("novelty", requires={"train"})
def novelty(generated, context):
    train = set(context["train"])
    return {"novelty": sum(g not in train for g in generated) / len(generated)}


@evaluator("needs_pkg")
def needs_missing_package(generated, context):
    require_package("surely_not_an_installed_package_xyz", extra="chem")
    return {"never": 1.0}


GENERATED = [1, 2, 3, 4]


def test_decorated_function_is_an_evaluator():
    assert isinstance(mean_value, Evaluator)
    assert mean_value.name == "mean" and mean_value.requires == frozenset()
    assert novelty.requires == frozenset({"train"})
    assert mean_value.__doc__ == "Mean of the generated numbers."
    assert mean_value(GENERATED, {}) == {"mean": 2.5}


def test_metrics_computed_when_context_available():
    report = run_evaluators([mean_value, novelty], GENERATED, {"train": [1, 2]})
    assert report.metrics == {"mean": 2.5, "novelty": 0.5}
    assert report.skipped == {}


def test_missing_context_key_skipped_with_reason():
    report = run_evaluators([mean_value, novelty], GENERATED, {})
    assert report.metrics == {"mean": 2.5}
    assert report.skipped == {"novelty": "missing context: train"}
    # a key present but None counts as missing (CLIs pass optional inputs that way)
    assert run_evaluators([novelty], GENERATED, {"train": None}).skipped == {"novelty": "missing context: train"}


def test_missing_dependency_skipped_with_install_hint():
    report = run_evaluators([needs_missing_package, mean_value], GENERATED, {})
    assert report.metrics == {"mean": 2.5}
    assert "surely_not_an_installed_package_xyz" in report.skipped["needs_pkg"]
    assert "scoregen[chem]" in report.skipped["needs_pkg"]
    assert report.to_dict()["skipped"] == report.skipped


def test_require_package_returns_module_and_raises_import_error_subclass():
    assert require_package("math") is math
    with pytest.raises(ImportError):  # MissingDependency is an ImportError: plain `except ImportError` works
        require_package("surely_not_an_installed_package_xyz")
    # a missing submodule of an installed package is a real error, not an optional dependency
    with pytest.raises(ModuleNotFoundError) as info:
        require_package("numpy.surely_not_a_submodule")
    assert not isinstance(info.value, MissingDependency)


def test_other_exceptions_propagate():
    @evaluator("broken")
    def broken(generated, context):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run_evaluators([broken], GENERATED, {})


def test_values_converted_to_float_and_nan_kept():
    @evaluator("np")
    def numpy_values(generated, context):
        return {"count": np.int64(3), "undefined": float("nan")}

    report = run_evaluators([numpy_values], GENERATED, {})
    assert report.metrics["count"] == 3.0 and type(report.metrics["count"]) is float
    assert math.isnan(report.metrics["undefined"])


def test_bad_outputs_and_duplicates_rejected():
    @evaluator("text")
    def text(generated, context):
        return {"mean": "high"}

    @evaluator("other_mean")
    def other_mean(generated, context):
        return {"mean": 0.0}

    with pytest.raises(TypeError, match="non-numeric value for 'mean'"):
        run_evaluators([text], GENERATED, {})
    with pytest.raises(ValueError, match="produced by both 'mean' and 'other_mean'"):
        run_evaluators([mean_value, other_mean], GENERATED, {})
    with pytest.raises(ValueError, match="two evaluators are named 'mean'"):
        run_evaluators([mean_value, mean_value], GENERATED, {})
    with pytest.raises(TypeError, match="not a string"):
        evaluator("x", requires="train")


def test_protocol_accepts_plain_class():
    class Size:
        name = "size"
        requires = frozenset()

        def __call__(self, generated, context):
            return {"n": len(generated)}

    report = run_evaluators([Size()], GENERATED, {})
    assert isinstance(report, EvaluationReport) and report.metrics == {"n": 4.0}


def test_an_evaluator_may_skip_itself_with_a_reason():
    from shared.evaluation import EvaluationSkipped, evaluator, run_evaluators

    @evaluator("picky")
    def picky(generated, context):
        if context.get("mode") is None:
            raise EvaluationSkipped("missing context: mode")
        return {"x": 1.0}

    assert run_evaluators([picky], None, {}).skipped == {"picky": "missing context: mode"}
    assert run_evaluators([picky], None, {"mode": 1}).metrics == {"x": 1.0}
