"""The house plan's arrows point down: shared/ knows tensors, not chemistry; domains don't import each other."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHEMISTRY = {"rdkit", "pymatgen", "ase", "networkx", "smact", "matminer", "spglib", "chgnet", "tblite", "pyscf"}
DOMAINS = {"graphgen", "molgen", "crysgen"}


# The one decided exception (docs/architecture.md): graphgen.dft_runs.make_dft_hook hands molecules to molgen's QM
# hooks, importing them inside that function only, so neither importing graphgen nor `graphgen --help` loads molgen.
LAZY_IMPORTS_ALLOWED = {("graphgen/dft_runs.py", "molgen.hooks")}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    allowed = {module for file, module in LAZY_IMPORTS_ALLOWED if path == ROOT / file}
    lazy = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in allowed and id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_shared_never_imports_chemistry_or_domains():
    offenders = {}
    for path in (ROOT / "shared").rglob("*.py"):
        bad = _imported_top_levels(path) & (CHEMISTRY | DOMAINS)
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"shared/ must stay chemistry-free: {offenders}"


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_domains_do_not_import_each_other(domain):
    others = DOMAINS - {domain}
    offenders = {}
    for path in (ROOT / domain).rglob("*.py"):
        bad = _imported_top_levels(path) & others
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"{domain} imports another domain package: {offenders}"


def test_importing_shared_loads_no_chemistry_library():
    code = ("import sys, shared, shared.training, shared.hooks, shared.evaluation, shared.cli_common; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(CHEMISTRY | DOMAINS)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
