"""The notebooks: stored executed (with figures and 3-D views), current with their code, and runnable in a fresh
Jupyter kernel; one runs through papermill with a changed parameter.

Regenerate the stored outputs with ``python notebooks/execute.py`` (fixed seeds).
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
THREE_D = {"01", "02", "03", "05"}  # notebooks that show structures in 3-D
MAX_KB = 400


def _execute_module():
    spec = importlib.util.spec_from_file_location("notebook_execute", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_six_notebooks_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_stored_notebook_is_executed_current_and_small(notebook):
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "stored without running every cell"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], "a stored cell ended in an error"
    # the code that was executed is the code in the file
    assert nb.metadata["scoregen"]["code_sha256"] == _execute_module().code_hash(nb), \
        f"{notebook.name} changed since it was executed: run python notebooks/execute.py {notebook.name[:2]}"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the stored notebook"
    if notebook.name[:2] in THREE_D:
        assert any("3dmol" in json.dumps(o.get("data", {})).lower() for o in outputs), "no 3-D view"
    assert notebook.stat().st_size < MAX_KB * 1024
    # quiet: no flood of RDKit valence messages, no tqdm IProgress warnings
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.count("Explicit valence") <= 1 and "IProgress not found" not in text


def test_each_notebook_has_a_parameters_cell():
    import nbformat

    for notebook in NOTEBOOKS:
        nb = nbformat.read(notebook, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", notebook.name


# running them: a fresh kernel each; the heavy defaults are turned down where a parameter allows
FAST = {"01": {"n_samples": 32, "n_xtb": 3}, "03": {"n_crystals": 12}, "04": {"n_candidates": 16},
        "05": {"n_train": 120, "train_steps": 60, "n_samples": 12}, "06": {"n_samples": 24, "steps": 100}}


@pytest.mark.parametrize("notebook", [p for p in NOTEBOOKS if p.name[:2] != "02"], ids=lambda p: p.stem)
def test_notebook_runs_in_a_fresh_kernel(notebook):
    nb = _execute_module().execute(notebook, timeout=600, parameters=FAST.get(notebook.name[:2]))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_papermill_runs_a_variant_with_a_changed_parameter(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "gap7.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "02_3d_molecules_with_target_properties.ipynb"),
                               str(out), parameters={"target_gap": 7.0, "n_molecules": 8, "steps": 20},
                               cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    nb = json.loads(out.read_text())
    printed = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "target 7.0 eV" in printed and "8 + 8 molecules" in printed
    assert (tmp_path / "gap_high.sdf").is_file()
