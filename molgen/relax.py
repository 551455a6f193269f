"""Relax 3D molecules with MMFF94 (RDKit) or GFN2-xTB (tblite through ASE) and report what relaxation changed.

For every molecule: the relaxed geometry, the relaxation energy E(start) - E(relaxed) in eV (its strain at the
method's level), the heavy-atom RMSD between start and end after optimal superposition, whether the bonding
survives (the connectivity the relaxed coordinates show, judged by QM9's own bond lengths, equals the molecule's bond
graph: every bond no longer than its pair's QM9 window allows, no other pair that close; ``perceived_bonds`` of
``molgen.metrics.windows``. RDKit's covalent-radius rule was tried first: it reads the transannular C...C contacts
of bicyclic cages as bonds and called the bonding of 5 % of QM9 test molecules changed; this rule, 1 in 3,000),
whether the optimiser converged, and the seconds it took. Nothing is silently rewritten: the atoms, bonds and
charges stay as generated, only the coordinates change, and a molecule whose bonding changes says so.

Only molecules a chemist would hand to a force field are relaxed: RDKit-valid, one fragment, closed shell. The
others are ``skipped`` with the reason, as is a molecule MMFF cannot type; an optimiser error is ``failed``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["RELAX_METHODS", "RelaxResult", "relax_molecule", "relax_molecules", "heavy_atom_rmsd",
           "connectivity_matches", "annotate_mol"]

RELAX_METHODS = ("mmff", "xtb")
_KCAL_PER_MOL_TO_EV = 0.0433641043


@dataclass
class RelaxResult:
    """What relaxing one molecule did. ``mol`` is the relaxed molecule (or the input when nothing was done)."""

    method: str
    status: str  # "ok", "skipped" (not a molecule the method should treat) or "failed" (the method broke)
    mol: object = field(repr=False)
    reason: str = ""
    energy_start_eV: float | None = None
    energy_final_eV: float | None = None
    heavy_rmsd_A: float | None = None
    bonding_survives: bool | None = None
    converged: bool | None = None
    n_steps: int | None = None
    seconds: float = 0.0

    @property
    def relax_energy_eV(self) -> float | None:
        """E(start) - E(relaxed): positive, the energy the generated geometry held above its nearest minimum."""
        if self.energy_start_eV is None or self.energy_final_eV is None:
            return None
        return self.energy_start_eV - self.energy_final_eV

    @property
    def sound(self) -> bool:
        """Relaxed, and its bonding survived: the molecule a chemist gets is the molecule that was generated."""
        return self.status == "ok" and bool(self.bonding_survives)

    def fields(self) -> dict:
        """Flat values for an SDF record or a table row."""
        return {"relax_method": self.method, "relax_status": self.status, "relax_reason": self.reason,
                "relax_energy_eV": _round(self.relax_energy_eV, 4), "relax_heavy_rmsd_A": _round(self.heavy_rmsd_A, 4),
                "relax_bonding_changed": None if self.bonding_survives is None else int(not self.bonding_survives),
                "relax_converged": None if self.converged is None else int(self.converged),
                "relax_seconds": round(self.seconds, 4)}


def _round(value, digits):
    return None if value is None else round(float(value), digits)


def heavy_atom_rmsd(numbers: Sequence[int], a: np.ndarray, b: np.ndarray) -> float:
    """RMSD (Angstrom) between two conformers' heavy atoms after the optimal rotation and translation (Kabsch);
    all atoms when there is no heavy atom."""
    numbers = np.asarray(numbers)
    heavy = numbers > 1 if (numbers > 1).any() else np.ones_like(numbers, dtype=bool)
    p, q = np.asarray(a, dtype=np.float64)[heavy], np.asarray(b, dtype=np.float64)[heavy]
    p, q = p - p.mean(0), q - q.mean(0)
    u, s, vt = np.linalg.svd(p.T @ q)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    s[-1] *= sign
    squared = max((p * p).sum() + (q * q).sum() - 2.0 * s.sum(), 0.0)
    return float(np.sqrt(squared / len(p)))


def _bond_graph(mol) -> set[tuple[int, int]]:
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}


def connectivity_matches(mol, positions: np.ndarray | None = None) -> bool:
    """True when the connectivity of the coordinates (``perceived_bonds``: QM9 bond-length limits) equals the
    molecule's bond graph; ``positions`` default to the molecule's conformer."""
    from molgen.metrics.windows import perceived_bonds

    if positions is None:
        positions = mol.GetConformer().GetPositions()
    return perceived_bonds([a.GetAtomicNum() for a in mol.GetAtoms()], positions) == _bond_graph(mol)


def _precheck(mol) -> str:
    """Why the molecule should not be relaxed ('' if it should)."""
    from molgen.metrics.chemistry import check_molecule

    if mol.GetNumConformers() == 0:
        return "no 3D conformer"
    check = check_molecule(mol)
    if not check.valid:
        return "not RDKit-valid"
    if not check.connected:
        return "more than one fragment"
    if not check.closed_shell:
        return "open shell"
    return ""


def relax_molecule(mol, method: str = "mmff", fmax: float = 0.05, max_steps: int = 2000) -> RelaxResult:
    """Relax one RDKit molecule with explicit hydrogens and a conformer (see the module docstring).

    ``fmax`` (eV/Angstrom) and ``max_steps`` bound xTB's BFGS; MMFF runs up to ``max_steps`` iterations of
    RDKit's minimiser with its default convergence criteria.
    """
    if method not in RELAX_METHODS:
        raise ValueError(f"unknown relaxation method {method!r}; choose from {', '.join(RELAX_METHODS)}")
    start = time.perf_counter()
    why = _precheck(mol)
    if why:
        return RelaxResult(method, "skipped", mol, why, seconds=time.perf_counter() - start)
    try:
        result = _relax_mmff(mol, max_steps) if method == "mmff" else _relax_xtb(mol, fmax, max_steps)
    except Exception as err:  # noqa: BLE001 - an SCF or optimiser failure is this molecule's result
        result = RelaxResult(method, "failed", mol, f"{type(err).__name__}: {err}")
    if result.status == "ok":
        start_pos = mol.GetConformer().GetPositions()
        end_pos = result.mol.GetConformer().GetPositions()
        result.heavy_rmsd_A = heavy_atom_rmsd([a.GetAtomicNum() for a in mol.GetAtoms()], start_pos, end_pos)
        result.bonding_survives = connectivity_matches(result.mol)
    result.seconds = time.perf_counter() - start
    return result


def _relax_mmff(mol, max_steps: int) -> RelaxResult:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    work = Chem.Mol(mol)
    Chem.SanitizeMol(work)
    props = AllChem.MMFFGetMoleculeProperties(work)
    if props is None:
        return RelaxResult("mmff", "skipped", mol, "MMFF94 has no atom types for this molecule")
    ff = AllChem.MMFFGetMoleculeForceField(work, props)
    e0 = ff.CalcEnergy()
    ff.Initialize()
    not_converged = ff.Minimize(maxIts=max_steps)
    e1 = ff.CalcEnergy()
    relaxed = Chem.Mol(mol)  # the generated atoms and bonds (unsanitised), with the relaxed coordinates
    conf = relaxed.GetConformer()
    for i, xyz in enumerate(work.GetConformer().GetPositions()):
        conf.SetAtomPosition(i, xyz.tolist())
    return RelaxResult("mmff", "ok", relaxed, energy_start_eV=e0 * _KCAL_PER_MOL_TO_EV,
                       energy_final_eV=e1 * _KCAL_PER_MOL_TO_EV, converged=not not_converged)


def _relax_xtb(mol, fmax: float, max_steps: int) -> RelaxResult:
    from rdkit import Chem

    from shared.evaluation import require_package

    require_package("tblite", extra="dft")
    require_package("ase", extra="chem")
    from ase import Atoms
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    atoms = Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions())
    atoms.calc = TBLite(method="GFN2-xTB", charge=charge, multiplicity=1, verbosity=0)
    e0 = float(atoms.get_potential_energy())
    optimizer = BFGS(atoms, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    e1 = float(atoms.get_potential_energy())
    relaxed = Chem.Mol(mol)
    conf = relaxed.GetConformer()
    for i, xyz in enumerate(atoms.get_positions()):
        conf.SetAtomPosition(i, xyz.tolist())
    return RelaxResult("xtb", "ok", relaxed, energy_start_eV=e0, energy_final_eV=e1, converged=converged,
                       n_steps=int(optimizer.nsteps))


def _relax_star(args):
    mol_block, start, method, fmax, max_steps = args
    from rdkit import Chem

    mol = Chem.MolFromMolBlock(mol_block, sanitize=False, removeHs=False)
    conf = mol.GetConformer()
    for i, xyz in enumerate(start):  # full precision (a mol block keeps 4 decimals)
        conf.SetAtomPosition(i, xyz.tolist())
    result = relax_molecule(mol, method, fmax, max_steps)
    positions = result.mol.GetConformer().GetPositions()
    result.mol = None
    return result, positions


def relax_molecules(mols: Sequence, method: str = "mmff", workers: int = 1, fmax: float = 0.05,
                    max_steps: int = 2000, progress: bool = False) -> list[RelaxResult]:
    """Relax each molecule (see ``relax_molecule``); ``workers`` > 1 uses a process pool (worth it for xTB)."""
    if method not in RELAX_METHODS:
        raise ValueError(f"unknown relaxation method {method!r}; choose from {', '.join(RELAX_METHODS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    from rdkit import RDLogger

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mols), desc=f"relax ({method})", unit="mol")
    RDLogger.DisableLog("rdApp.*")  # invalid molecules are a status, not console noise
    try:
        if workers == 1:
            out = []
            for mol in mols:
                out.append(relax_molecule(mol, method, fmax, max_steps))
                if bar is not None:
                    bar.update()
            return out
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        from rdkit import Chem

        jobs = [(Chem.MolToMolBlock(m, kekulize=False), m.GetConformer().GetPositions(), method, fmax, max_steps)
                for m in mols]
        out = []
        # spawn: a forked child of a process whose OpenMP pool (torch, xTB) is running can deadlock
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for (result, positions), original in zip(pool.map(_relax_star, jobs), mols):
                relaxed = Chem.Mol(original)
                conf = relaxed.GetConformer()
                for i, xyz in enumerate(positions):
                    conf.SetAtomPosition(i, xyz.tolist())
                result.mol = relaxed
                out.append(result)
                if bar is not None:
                    bar.update()
        return out
    finally:
        RDLogger.EnableLog("rdApp.*")
        if bar is not None:
            bar.close()


def annotate_mol(mol, result: RelaxResult) -> None:
    """Write the result's fields onto ``mol`` as SDF properties (None values are left out)."""
    for name, value in result.fields().items():
        if value is None or value == "":
            continue
        mol.SetProp(name, str(value))
