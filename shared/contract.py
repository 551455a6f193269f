"""The model -> samples contract every domain package follows: ``load_model``, ``sample``, ``evaluate``.

Each of ``graphgen``, ``molgen`` and ``crysgen`` exports the same three names from its ``__init__``:

- ``load_model(path=None, *, device="cpu")``: None is the package's embedded default model, a file is a model
  file, a folder is a training run (its ``model.pt``); resolved here, in the library, by :func:`resolve_model_path`.
- ``sample(model, n=100, *, seed=0, steps=None, condition=None, guidance_scale=1.0, precision="fp32", ...)``:
  returns a :class:`Samples` object (``len()``, ``.items`` in the domain's ecosystem type: networkx graphs or
  SMILES, RDKit ``Mol``, pymatgen ``Structure``; ``.settings``; ``.write(path)``). Unconditional models refuse a
  ``condition`` with a clear error rather than ignoring it.
- ``evaluate(samples_or_path, ...)``: a dict of metrics for a :class:`Samples` object or a file/folder of samples.

Shapes of the options beyond these are the domain's own (graphgen's ``preset``, molgen's ``relax``, crysgen's
``elements``). :func:`check_contract` is the test every package runs against itself.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["CONTRACT", "SAMPLE_KEYWORDS", "Samples", "check_contract", "resolve_model_path"]

CONTRACT = ("load_model", "sample", "evaluate")
SAMPLE_KEYWORDS = ("seed", "steps", "condition", "guidance_scale", "precision")


@runtime_checkable
class Samples(Protocol):
    """What ``sample`` returns in every domain."""

    settings: dict[str, Any]

    @property
    def items(self) -> list[Any]: ...

    def __len__(self) -> int: ...

    def write(self, path: str | os.PathLike) -> Path: ...


def resolve_model_path(path: str | os.PathLike | None, default: Callable[[], Path], *,
                       file_name: str = "model.pt") -> Path:
    """``None`` -> ``default()`` (the embedded model); a run folder -> its ``file_name``; a file -> itself.

    A path that does not exist, or a folder without ``file_name``, raises FileNotFoundError naming it."""
    if path is None:
        return Path(default())
    path = Path(path)
    if path.is_dir():
        inner = path / file_name
        if not inner.is_file():
            raise FileNotFoundError(f"{path} is a folder without {file_name}: pass a model file or a training run "
                                    f"folder that has finished (or exported) its {file_name}")
        return inner
    if not path.is_file():
        raise FileNotFoundError(f"model file or run folder not found: {path}")
    return path


def check_contract(package: ModuleType) -> None:
    """Assert that ``package`` exports the contract with the shared keyword names (raises AssertionError)."""
    missing = [name for name in CONTRACT if not callable(getattr(package, name, None))]
    assert not missing, f"{package.__name__} lacks {missing} of the model -> samples contract"
    assert not [n for n in CONTRACT if n not in getattr(package, "__all__", ())], \
        f"{package.__name__}.__all__ must list {CONTRACT}"
    load = inspect.signature(package.load_model).parameters
    assert list(load)[0] == "path" and load["path"].default is None and "device" in load, \
        f"{package.__name__}.load_model must be load_model(path=None, *, device=...)"
    sample = inspect.signature(package.sample).parameters
    names = list(sample)
    assert names[:2] == ["model", "n"], f"{package.__name__}.sample must start (model, n, ...)"
    absent = [k for k in SAMPLE_KEYWORDS if k not in sample or sample[k].kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not absent, f"{package.__name__}.sample lacks the keyword-only options {absent}"
    assert list(inspect.signature(package.evaluate).parameters)[0] == "samples", \
        f"{package.__name__}.evaluate must take the samples (or their path) first"
