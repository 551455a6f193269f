"""Small CPU-trained property regressors shipped with molgen (one ``<property>.pt`` each + ``manifest.json``).

They are 2.5-4x the EGNN regressors' error of the literature (10-35 minutes of one CPU thread each; see the
manifest for steps, time and test MAE next to the references and to the first, 4-minute models): judges for
demos, campaigns and CPU benchmarks whose error is part of every number they give, not reference-quality models.
``build_pretrained`` is how they were made; a GPU run of ``molgen train-regressor`` with a bigger config gives
reference-quality models.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from shared.config import load_config
from shared.io import atomic_write_json

__all__ = ["PRETRAINED_DIR", "EGNN_REFERENCE_MAE", "GENERATOR_FILE", "read_manifest", "pretrained_path",
           "load_pretrained", "build_pretrained", "pretrained_generator_path", "read_generator_manifest",
           "package_generator"]

PRETRAINED_DIR = Path(__file__).resolve().parent
# test MAEs of the EGNN property classifiers used by EDM/PropMolFlow (reporting units of REPORTING_UNITS)
EGNN_REFERENCE_MAE = {"alpha": 0.10, "gap": 64.0, "homo": 39.0, "lumo": 36.0, "mu": 0.043, "Cv": 0.040}


GENERATOR_FILE = "generator.pt"  # the embedded 3D generator; its manifest is generator_manifest.json


def pretrained_generator_path(folder: str | os.PathLike = PRETRAINED_DIR) -> Path:
    path = Path(folder) / GENERATOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no embedded generator at {path}; pass a checkpoint (molgen train writes model.pt)")
    return path


def read_generator_manifest(folder: str | os.PathLike = PRETRAINED_DIR) -> dict:
    path = Path(folder) / "generator_manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no generator manifest at {path}")
    return json.loads(path.read_text())


def read_manifest(folder: str | os.PathLike = PRETRAINED_DIR) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained-regressor manifest at {path}")
    return json.loads(path.read_text())


def pretrained_path(prop: str, folder: str | os.PathLike = PRETRAINED_DIR) -> Path:
    """Path of the shipped regressor for ``prop``; FileNotFoundError names the ones available."""
    path = Path(folder) / f"{prop}.pt"
    if not path.is_file():
        available = sorted(p.stem for p in Path(folder).glob("*.pt"))
        raise FileNotFoundError(f"no pretrained regressor for {prop!r} in {folder}; available: {available}")
    return path


def load_pretrained(prop: str, folder: str | os.PathLike = PRETRAINED_DIR, map_location="cpu"):
    from molgen.regressor import load_regressor

    return load_regressor(pretrained_path(prop, folder), map_location)


def build_pretrained(data: str | os.PathLike, work_dir: str | os.PathLike, properties=None,
                     overrides: tuple[str, ...] = (), folder: str | os.PathLike = PRETRAINED_DIR) -> dict:
    """Train one regressor per property (sequentially), copy ``best.pt`` here and write the manifest.

    ``overrides`` are ``RegressorTrainConfig`` keys (e.g. ``max_time_s=240``); the manifest is rewritten after
    every property, so an interrupted build keeps what finished.
    """
    from molgen.train_regressor import REPORTING_UNITS, RegressorTrainConfig, evaluate_regressor, train_regressor

    folder = Path(folder)
    properties = list(properties or EGNN_REFERENCE_MAE)
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        manifest = {"protocol": "QM9 (qm9pack, bonds checked against QM9 SMILES), PropMolFlow split: trained on "
                                "train_regressor (first half of train), early stopping on valid, MAE on test",
                    "models": {}}
    for prop in properties:
        config = load_config(RegressorTrainConfig, None, [f"property={prop}", f"data={data}", *overrides])
        run_dir = Path(work_dir) / prop
        summary = train_regressor(config, run_dir)
        test = evaluate_regressor(run_dir / "best.pt", data, prop)
        shutil.copyfile(run_dir / "best.pt", folder / f"{prop}.pt")
        manifest["models"][prop] = {
            "file": f"{prop}.pt", "unit": REPORTING_UNITS[prop][0], "test_mae": test["mae"], "n_test": test["n"],
            "egnn_reference_mae": EGNN_REFERENCE_MAE.get(prop), "steps": summary["steps"],
            "best_step": summary["best_step"], "train_seconds": round(summary["train_seconds"], 1),
            "stop_reason": summary["stop_reason"], "best_valid_mae": summary["best_valid_mae"],
            "n_train": summary["n_train"], "overrides": list(overrides),
            "size_bytes": (folder / f"{prop}.pt").stat().st_size,
        }
        atomic_write_json(folder / "manifest.json", manifest)
        print(f"{prop}: test MAE {test['mae']:.4g} {test['unit']} after {summary['steps']} steps", file=sys.stderr)
    return manifest


def package_generator(model_path: str | os.PathLike, manifest: dict, qm9: str | os.PathLike | None = None,
                      folder: str | os.PathLike = PRETRAINED_DIR) -> Path:
    """Copy a trained generator (``model.pt``) here as the embedded default and write its manifest.

    ``manifest`` says how it was trained and what it scores. With ``qm9`` given, the OOD margins of the training
    half (99th minus 50th percentile) are added to the model's metadata when the file lacks them.
    """
    from molgen.checkpoint import FORMAT
    from shared.io import atomic_torch_save
    from shared.safe_load import safe_torch_load

    payload = safe_torch_load(model_path, f"molgen generator file ({FORMAT})")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{model_path} is not a molgen generator ({FORMAT})")
    meta = payload["metadata"]
    if qm9 is not None and "ood_margin" not in meta:
        from molgen.data import QM9Dataset

        half = QM9Dataset(qm9, meta.get("split", "train_generator"))
        meta["ood_margin"] = {p: float(half.property(p).quantile(0.99) - half.property(p).median())
                              for p in payload["model_config"]["conditioning"]["properties"]}
    train_config = meta.get("train_config") or {}
    if train_config.get("data"):  # shipped files name the data, not the build machine's path to it
        train_config["data"] = f"prepared QM9 ({Path(train_config['data']).name}, molgen.data.prepare_qm9)"
    path = atomic_torch_save(payload, Path(folder) / GENERATOR_FILE)
    atomic_write_json(Path(folder) / "generator_manifest.json",
                      {**manifest, "file": GENERATOR_FILE, "size_bytes": path.stat().st_size,
                       "steps": meta.get("steps"), "epochs": meta.get("epochs"), "n_train": meta.get("n_train")})
    return path
