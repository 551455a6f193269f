"""Execute the notebooks in a fresh Jupyter kernel and store them with their outputs.

    python notebooks/execute.py                 # all of them
    python notebooks/execute.py 02 05           # those whose names start so

Each notebook runs in a scratch folder (its caches and files do not land in the repository) with fixed seeds, so a
rerun gives the same molecules and crystals (timings differ). The stored notebook records the hash of its code
cells (``metadata.scoregen.code_sha256``) and its runtime: ``tests/test_notebooks.py`` fails when a committed
notebook's code no longer matches what was executed. Volatile metadata (execution timestamps, widget state) is
dropped to keep the files small and diffs quiet.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def code_hash(nb) -> str:
    """sha256 of the notebook's code cells (sources only, in order)."""
    code = "\n\x00\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()


def execute(path: Path, timeout: int = 900, parameters: dict | None = None, cwd: str | None = None):
    """The executed notebook (nbformat node); ``parameters`` replace the ``parameters``-tagged cell's values the
    way papermill injects them (a cell after it)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if parameters:
        index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        lines = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
        cell = nbformat.v4.new_code_cell(f"# Parameters\n{lines}")
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(index + 1, cell)
    with tempfile.TemporaryDirectory(prefix="scoregen-nb-") as scratch:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": cwd or scratch}})
        start = time.perf_counter()
        client.execute()
        runtime = time.perf_counter() - start
    nb.metadata["scoregen"] = {"code_sha256": code_hash(nb), "runtime_s": round(runtime, 1)}
    return nb


def clean(nb):
    """Drop volatile metadata: execution timestamps, widget state."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            data.pop("application/vnd.jupyter.widget-view+json", None)
    return nb


def main(argv: list[str]) -> int:
    import nbformat

    paths = sorted(HERE.glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a) for a in argv)]
    for path in paths:
        nb = clean(execute(path))
        nbformat.write(nb, path)
        print(f"{path.name}: {nb.metadata['scoregen']['runtime_s']} s, {path.stat().st_size / 1024:.0f} kB",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
