"""The model -> samples contract (shared.contract) holds in all three domains: the same names, the same keyword
options, library-side resolution of "embedded default / file / run folder", and Samples objects that write."""

from __future__ import annotations

import shutil

import pytest

import crysgen
import graphgen
import molgen
from shared.contract import Samples, check_contract, resolve_model_path

PACKAGES = {"graphgen": graphgen, "molgen": molgen, "crysgen": crysgen}
SMALL = {  # a few samples in a few steps: the contract, not the quality
    "graphgen": dict(steps=3),
    "molgen": dict(steps=3),
    "crysgen": dict(steps=3),
}
SUFFIX = {"graphgen": "samples.smi", "molgen": "samples.sdf", "crysgen": "crystals"}


@pytest.mark.parametrize("name", list(PACKAGES))
def test_package_exports_the_contract(name):
    check_contract(PACKAGES[name])


@pytest.mark.parametrize("name", list(PACKAGES))
def test_embedded_model_samples_and_writes(name, tmp_path):
    package = PACKAGES[name]
    model = package.load_model()
    samples = package.sample(model, 2, seed=1, **SMALL[name])
    assert isinstance(samples, Samples) and len(samples) == 2 and len(samples.items) == 2
    assert samples.settings  # the settings travel with the samples
    out = samples.write(tmp_path / SUFFIX[name])
    assert out.exists()


@pytest.mark.parametrize("name", list(PACKAGES))
def test_a_run_folder_means_its_model_file(name, tmp_path):
    package = PACKAGES[name]
    embedded = {"graphgen": graphgen.default_model_path, "molgen": lambda: __import__(
        "molgen.pretrained", fromlist=["x"]).pretrained_generator_path(), "crysgen": crysgen.default_checkpoint}[name]()
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(embedded, run / "model.pt")
    if name == "crysgen":  # the embedded crysgen model keeps its sampler settings in a sidecar file
        from crysgen.checkpoint import sampler_defaults_path

        if sampler_defaults_path(embedded).is_file():
            shutil.copy(sampler_defaults_path(embedded), sampler_defaults_path(run / "model.pt"))
    assert package.load_model(run) is not None
    with pytest.raises(FileNotFoundError, match="not found"):
        package.load_model(tmp_path / "missing.pt")


def test_resolve_model_path_rules(tmp_path):
    default = tmp_path / "default.pt"
    default.write_bytes(b"x")
    assert resolve_model_path(None, lambda: default) == default
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="without model.pt"):
        resolve_model_path(tmp_path / "run", lambda: default)
    (tmp_path / "run" / "model.pt").write_bytes(b"x")
    assert resolve_model_path(tmp_path / "run", lambda: default) == tmp_path / "run" / "model.pt"
    assert resolve_model_path(default, lambda: tmp_path / "other") == default


def test_unconditional_graphgen_refuses_a_condition():
    model = graphgen.load_model()
    with pytest.raises(ValueError, match="unconditional"):
        graphgen.sample(model, 1, condition={"gap": 4.5})


def test_evaluate_takes_samples_or_their_file(tmp_path):
    model = graphgen.load_model()
    samples = graphgen.sample(model, 4, seed=0, steps=3)
    direct = graphgen.evaluate(samples, fcd=False)
    from_file = graphgen.evaluate(samples.write(tmp_path / "s.smi"), fcd=False)
    assert direct["validity_wo_correction"] == pytest.approx(from_file["validity_wo_correction"])
    report = molgen.evaluate(molgen.sample(molgen.load_model(), 2, seed=0, steps=3))
    assert "metrics" in report and report["metrics"]


def test_model_files_share_one_header(tmp_path):
    import torch

    from shared.model_file import read_model_file, write_model_file

    path = write_model_file(tmp_path / "m.pt", {"weights": {"w": torch.ones(2)}}, format="demo", version=2,
                            domain="demo")
    payload = read_model_file(path, format="demo", max_version=2, what="demo model file")
    assert (payload["format"], payload["format_version"], payload["domain"]) == ("demo", 2, "demo")
    with pytest.raises(ValueError, match="is not a other model file: it holds format 'demo'; try this"):
        read_model_file(path, format="other", max_version=1, what="other model file", hint="try this")
    with pytest.raises(ValueError, match="format version 2.*up to version 1"):
        read_model_file(path, format="demo", max_version=1, what="demo model file")
    with pytest.raises(ValueError, match="reserved"):
        write_model_file(tmp_path / "x.pt", {"format": "x"}, format="demo", version=1, domain="demo")
    # the shipped files, written before the header was shared, still read (legacy version keys)
    for name, fmt, version in (("graphgen", "scoregen.graphgen.model", 1), ("molgen", "molgen-generator-v1", 1),
                               ("crysgen", "crysgen-model", 1)):
        package = PACKAGES[name]
        path = {"graphgen": graphgen.default_model_path, "crysgen": crysgen.default_checkpoint,
                "molgen": lambda: __import__("molgen.pretrained", fromlist=["x"]).pretrained_generator_path()}[name]()
        assert read_model_file(path, format=fmt, max_version=version, what="x")["format_version"] == version
        assert package.load_model(path) is not None
