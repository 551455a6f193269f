"""Shipped manifests describe their models without the build machine: no absolute paths, no home directories."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = [ROOT / "graphgen" / "pretrained", ROOT / "molgen" / "pretrained", ROOT / "crysgen" / "pretrained"]
MANIFESTS = sorted(p for folder in PRETRAINED for p in folder.glob("*.json"))

_WINDOWS = re.compile(r"^[A-Za-z]:[\\/]")
_TILDE = re.compile(r"^~[\w.-]*[\\/]")  # ~/x, ~user/x; not ~0.8x (approximately)
_HOMES = re.compile(r"(^|[\\/])(home|root|Users)[\\/]")


def machine_paths(text: str) -> list[str]:
    """Tokens of ``text`` that name a place on some machine: absolute, home-relative or under a home folder."""
    bad = []
    for raw in text.split():
        token = raw.strip("\"'()[]{}<>,;")
        if not token or "://" in token:  # URLs are addresses, not machine paths
            continue
        if (token.startswith("/") and len(token) > 1) or _TILDE.match(token) or token.startswith("$HOME") \
                or _WINDOWS.match(token) or _HOMES.search(token):
            bad.append(token)
    return bad


def _strings(obj, where=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"{where}.{key} (key)", str(key)
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _strings(value, f"{where}[{i}]")
    elif isinstance(obj, str):
        yield where or ".", obj


def test_every_domain_ships_a_manifest():
    assert {p.parent.parent.name for p in MANIFESTS} == {"graphgen", "molgen", "crysgen"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_names_no_machine_path(manifest):
    data = json.loads(manifest.read_text(encoding="utf-8"))
    home = str(Path.home())
    offenders = {}
    for where, text in _strings(data):
        found = machine_paths(text) + ([home] if home not in ("/", "") and home in text else [])
        if found:
            offenders[where] = found
    assert not offenders, f"{manifest.relative_to(ROOT)} names paths of the build machine: {offenders}"


@pytest.mark.parametrize("text, bad", [
    ("/work/shared/data/crystals/perov_5/val.csv", True),
    ("data at /root/.cache/scoregen/qm9.pt here", True),
    ("~/.cache/scoregen", True),
    ("~alice/data", True),
    ("~\\data", True),
    ("rose back to ~0.8x its peak", False),
    ("C:\\Users\\me\\qm9.pt", True),
    ("runs/home/x", True),
    ("(see /tmp/run)", True),
    ("https://raw.githubusercontent.com/txie-93/cdvae/main/data/perov_5/val.csv", False),
    ("<data_dir>/crystals/perov_5/val.csv", False),
    ("benchmarks/results/graphgen_qm9_ours.{json,md}", False),
    ("trained in runs/molgen-qm9-cpu for 4500 steps, mean/std", False),
    ("--run-dir RUN (resuming RUN)", False),
])
def test_machine_path_detection(text, bad):
    assert bool(machine_paths(text)) is bad


def test_shipped_generator_metadata_names_no_machine_path():
    import torch

    payload = torch.load(ROOT / "molgen" / "pretrained" / "generator.pt", weights_only=True, map_location="cpu")
    offenders = {where: machine_paths(text) for where, text in _strings(payload["metadata"]) if machine_paths(text)}
    assert not offenders, f"molgen/pretrained/generator.pt metadata names build-machine paths: {offenders}"


def test_shipped_crystal_model_metadata_names_no_machine_path():
    import torch

    payload = torch.load(ROOT / "crysgen" / "pretrained" / "perov5.pt", weights_only=True, map_location="cpu")
    offenders = {where: machine_paths(text) for where, text in _strings(payload["meta"]) if machine_paths(text)}
    assert not offenders, f"crysgen/pretrained/perov5.pt metadata names build-machine paths: {offenders}"
