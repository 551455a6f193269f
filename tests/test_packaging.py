"""Repository-level packaging: environment.yml mirrors pyproject.toml, the console scripts exist and work, and the
benchmark harness (top-level ``benchmarks/``, not an installed package) measures and writes results correctly."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a top-level folder, importable from the repository root
    sys.path.insert(0, str(REPO_ROOT))

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from benchmarks import harness  # noqa: E402

# pyproject (PyPI) name -> conda-forge name, or "pip" for packages installed through environment.yml's pip list.
# A new dependency must be added here deliberately: the test below fails until it is.
PYPI_TO_CONDA = {
    "torch": "pytorch",
    "numpy": "numpy",
    "scipy": "scipy",
    "pyyaml": "pyyaml",
    "tqdm": "tqdm",
    "torch-geometric": "pytorch-geometric",  # conda-forge spells it pytorch_geometric; names are normalised
    "e3nn": "e3nn",
    "rdkit": "rdkit",
    "posebusters": "posebusters",  # conda-forge has it
    "networkx": "networkx",
    "fcd": "pip",
    "pymatgen": "pymatgen",
    "smact": "pip",
    "matminer": "matminer",
    "spglib": "spglib",
    "ase": "ase",
    "matplotlib": "matplotlib",
    "dask": "dask",
    "distributed": "distributed",
    "tblite": "tblite-python",
    "pyscf": "pyscf",
    "chgnet": "pip",
    "qm9pack": "pip",
    "pandas": "pandas",
    "scikit-learn": "scikit-learn",
    "ipykernel": "ipykernel",
    "nbclient": "nbclient",
    "nbformat": "nbformat",
    "papermill": "papermill",
    "py3dmol": "py3dmol",
    "ipywidgets": "ipywidgets",
    "pytest": "pytest",
    "pytest-timeout": "pytest-timeout",
    "ruff": "ruff",
    "torchdiffeq": "torchdiffeq",
    "build": "python-build",
    "setuptools": "setuptools",
}
CONDA_ONLY = {"python", "pip"}  # conda needs these; they are not Python dependencies of scoregen
CONSOLE_SCRIPTS = ("graphgen", "molgen", "crysgen")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;#]*)")


def _split(requirement: str) -> tuple[str, str]:
    """("name", "specifier") with the name normalised (lower case, '-' for '_' and '.') and spaces removed."""
    match = _REQUIREMENT.match(requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1).lower()), match.group(2).replace(" ", "")


def _pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def _pyproject_requirements() -> dict[str, str]:
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += [line for line in extra if not line.startswith("scoregen")]  # skip self-referencing extras
    return dict(_split(line) for line in lines)


def _environment_requirements() -> tuple[dict[str, str], dict[str, str]]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env.get("channels") == ["conda-forge"], "environment.yml must use conda-forge only"
    conda, pip = {}, {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip.update(_split(line) for line in entry.get("pip", []) if not line.startswith("-"))
        else:
            name, spec = _split(entry)
            conda[name] = spec
    return conda, pip


def test_environment_yml_mirrors_pyproject():
    wanted = _pyproject_requirements()
    conda, pip = _environment_requirements()
    problems = [f"{name}: not in PYPI_TO_CONDA (decide its conda name or 'pip')"
                for name in wanted if name not in PYPI_TO_CONDA]
    problems += [f"{name}: in PYPI_TO_CONDA but no longer in pyproject.toml"
                 for name in PYPI_TO_CONDA if name not in wanted]
    expected_conda, expected_pip = {}, {}
    for name, spec in wanted.items():
        target = PYPI_TO_CONDA.get(name)
        if target == "pip":
            expected_pip[name] = spec
        elif target is not None:
            expected_conda[target] = spec
    for label, expected, found in (("conda", expected_conda, conda), ("pip", expected_pip, pip)):
        for name, spec in expected.items():
            if name not in found:
                problems.append(f"{name}{spec}: missing from the {label} list of environment.yml")
            elif found[name] != spec:
                problems.append(f"{name}: pyproject says {spec!r}, environment.yml ({label}) says {found[name]!r}")
        extra = set(found) - set(expected) - (CONDA_ONLY if label == "conda" else set())
        problems += [f"{name}: in environment.yml ({label}) but not in pyproject.toml" for name in sorted(extra)]
    assert not problems, "environment.yml and pyproject.toml disagree:\n  " + "\n  ".join(problems)


def test_requirement_parsing():
    assert _split("torch>=2.1") == ("torch", ">=2.1")
    assert _split("Pytest_Timeout >= 2.1 ; python_version>'3'") == ("pytest-timeout", ">=2.1")
    assert _split("scoregen[chem]") == ("scoregen", "")


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS)
def test_console_script_declared_and_importable(script):
    scripts = _pyproject()["project"]["scripts"]
    assert script in scripts, f"[project.scripts] has no {script!r}"
    module_name, _, attr = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attr))


@pytest.mark.parametrize("package", CONSOLE_SCRIPTS)
def test_cli_version_help_and_user_error(package, capsys):
    cli = importlib.import_module(f"{package}.cli")
    version = importlib.import_module(package).__version__
    assert cli.main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{package} {version}" and "torch " in out and "cuda: " in out
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "version" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"{package}: error: argument COMMAND: invalid choice: 'no-such-command'")


# --- benchmark harness --------------------------------------------------------------------------------------


class FakeClock:
    """perf_counter replacement: each call to ``work`` advances time by the next scripted duration."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self):
        return self.now

    def work(self):
        self.calls += 1
        self.now += self.durations.pop(0)


def test_timeit_statistics_hand_computed(monkeypatch):
    clock = FakeClock([50.0, 1.0, 2.0, 100.0, 4.0, 3.0])  # first is warmup, excluded
    monkeypatch.setattr(harness.time, "perf_counter", clock.perf_counter)
    stats = harness.timeit(clock.work, repeats=5, warmup=1)
    # sorted samples 1, 2, 3, 4, 100: median 3; linear-interpolated quartiles at ranks 1 and 3 -> 2 and 4
    assert clock.calls == 6
    assert stats.samples_s == (1.0, 2.0, 100.0, 4.0, 3.0)
    assert (stats.median_s, stats.q1_s, stats.q3_s, stats.iqr_s) == (3.0, 2.0, 4.0, 2.0)
    assert (stats.min_s, stats.max_s, stats.mean_s) == (1.0, 100.0, 22.0)
    assert json.loads(json.dumps(stats.to_dict()))["samples_s"] == [1.0, 2.0, 100.0, 4.0, 3.0]


def test_timeit_sync_and_validation():
    syncs = []
    stats = harness.timeit(lambda: None, repeats=3, warmup=0, sync=lambda: syncs.append(1))
    assert len(syncs) == 6 and stats.repeats == 3 and stats.min_s >= 0
    with pytest.raises(ValueError, match="repeats"):
        harness.timeit(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        harness.timeit(lambda: None, warmup=-1)


def test_machine_info_fields():
    info = harness.machine_info()
    import numpy
    import torch

    assert info["torch"] == torch.__version__ and info["numpy"] == numpy.__version__
    assert info["logical_cores"] >= 1 and info["torch_threads"] >= 1 and info["cpu_model"]
    assert info["device"] in ("cpu", "cuda")
    json.dumps(info)


def test_write_results_json_and_markdown(tmp_path):
    machine = {"cpu_model": "Test CPU", "torch": "x"}
    table = [{"sampler": "euler", "nfe": 100, "time_s": 1.234567}, {"sampler": "heun|2", "nfe": 200}]
    json_path, md_path = harness.write_results(
        "demo", {"fcd": {"mean": 1.5, "std": 0.25}, "validity": 0.97},
        protocol={"samples": 1000, "seed": 0}, command="python -m benchmarks.demo --n 1000",
        table=table, results_dir=tmp_path, machine=machine,
    )
    assert (json_path, md_path) == (tmp_path / "demo.json", tmp_path / "demo.md")
    record = json.loads(json_path.read_text())
    assert record["results"]["fcd"] == {"mean": 1.5, "std": 0.25} and record["table"] == table
    assert record["protocol"] == {"samples": 1000, "seed": 0} and record["machine"] == machine
    assert record["command"] == "python -m benchmarks.demo --n 1000"
    md = md_path.read_text()
    assert "| sampler | nfe | time_s |" in md
    assert "| euler | 100 | 1.235 |" in md and "| heun\\|2 | 200 |  |" in md  # 4 significant digits, escaped pipe
    assert "| fcd.mean | 1.5 |" in md and "| validity | 0.97 |" in md
    assert "- **samples**: 1000" in md and "- **cpu_model**: Test CPU" in md
    assert "```bash\npython -m benchmarks.demo --n 1000\n```" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "demo.md"]  # no temporary files left


def test_write_results_protocol_text_and_bad_input(tmp_path):
    _, md_path = harness.write_results("plain", {"x": 1}, "Ran once.", "cmd", results_dir=tmp_path, machine={})
    assert "## Protocol\n\nRan once.\n" in md_path.read_text()
    with pytest.raises(ValueError, match="benchmark name"):
        harness.write_results("../escape", {}, "", "cmd", results_dir=tmp_path, machine={})
    with pytest.raises(TypeError, match="table must be a list of dicts"):
        harness.write_results("t", {}, "", "cmd", table=[1, 2], results_dir=tmp_path, machine={})


def test_wheel_and_sdist_build_with_the_licence_and_the_embedded_models(tmp_path):
    """Build both distributions the way `python -m build` does (without isolation: no network needed), so a
    packaging break shows here before a user meets it: SPDX licence metadata, the licence file, the console scripts
    and the embedded models inside the wheel."""
    import subprocess
    import tarfile
    import zipfile

    pytest.importorskip("build")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir",
                           str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "License classifiers are deprecated" not in done.stderr and "project.license" not in done.stderr
    (wheel,) = tmp_path.glob("scoregen-*.whl")
    (sdist,) = tmp_path.glob("scoregen-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for package in ("shared", "graphgen", "molgen", "crysgen"):
        assert f"{package}/__init__.py" in names
    assert "graphgen/pretrained/qm9.pt" in names and "molgen/pretrained/generator.pt" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert all(f"{script} = {script}.cli:main" in entry_points for script in CONSOLE_SCRIPTS)
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/LICENSE") for m in members) and any(m.endswith("/pyproject.toml") for m in members)
