"""Quantum-chemistry hooks on the ``shared.hooks`` protocol: GFN2-xTB (tblite) and B3LYP (PySCF).

Items are ``MoleculeRecord``s (atomic numbers, positions in Angstrom, total charge, spin multiplicity): small,
picklable, hashed from rounded coordinates so the cache key is stable. Run batches with
``shared.hooks.run_hook(hook, records, executor=..., cache_dir=...)``; a failed SCF or an open-shell molecule the
hook will not treat is a "failed" result whose reason says so.

* ``XTBHook``: GFN2-xTB single point (energy, HOMO/LUMO/gap from orbital energies and occupations, dipole),
  optionally after an ASE BFGS optimisation with tblite's ASE calculator.
* ``PySCFHook``: B3LYP/6-31G(2df,p), QM9's level of theory, with the VWN-RPA flavour of B3LYP that Gaussian
  (and so QM9) uses, PySCF ``xc="b3lypg"``; optional density fitting; optional harmonic frequencies -> Cv at
  298.15 K (slow: a full Hessian). Open-shell molecules fail with reason "open-shell ..." unless
  ``allow_open_shell=True`` (then UKS). The default ``basis="qm9"`` is 6-31G(2df,p) as Gaussian 09 defines it
  (Pople's 2d exponents, Cartesian d; ``molgen.qm_basis``), which reproduces QM9's labels; any PySCF basis
  name can be passed instead (PySCF's own "6-31G(2df,p)" differs: QM9 water dipole 1.98 D instead of 1.85 D).

Everything reported is in molgen's units (``molgen.units``): energies in eV, dipoles in Debye, Cv in cal/(mol K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from molgen.qm_basis import QM9_BASIS_NAME, qm9_basis
from molgen.units import ANGSTROM_TO_BOHR, E_BOHR_TO_DEBYE, HARTREE_TO_EV
from shared.hooks import content_hash
from shared.registry import Registry

__all__ = ["QM_HOOKS", "MoleculeRecord", "OpenShellError", "dft_input_problem", "SCFNotConverged", "frontier_orbitals",
           "XTBHook", "PySCFHook"]

_POSITION_DECIMALS = 6  # 1e-6 Angstrom: far below any physical effect, far above float noise
_HARTREE_PER_K_TO_CAL_PER_MOL_K = 627.5094740631 * 1000.0


class OpenShellError(ValueError):
    """The molecule has unpaired electrons and the hook was not asked to treat open shells."""


class SCFNotConverged(RuntimeError):
    """The self-consistent field did not converge."""


@dataclass(frozen=True)
class MoleculeRecord:
    """One molecule for a hook: atomic numbers, positions (Angstrom), total charge, spin multiplicity 2S+1."""

    numbers: tuple[int, ...]
    positions: tuple[tuple[float, float, float], ...]
    charge: int = 0
    multiplicity: int = 1

    def __post_init__(self) -> None:
        if len(self.numbers) == 0:
            raise ValueError("MoleculeRecord: no atoms")
        if len(self.positions) != len(self.numbers) or any(len(p) != 3 for p in self.positions):
            raise ValueError(
                f"MoleculeRecord: {len(self.numbers)} atoms need {len(self.numbers)} positions of 3 coordinates"
            )
        if any(z < 1 or z > 118 for z in self.numbers):
            raise ValueError(f"MoleculeRecord: invalid atomic numbers {self.numbers}")
        if self.multiplicity < 1:
            raise ValueError(f"MoleculeRecord: multiplicity must be >= 1, got {self.multiplicity}")
        if self.n_electrons < 0 or (self.n_electrons - (self.multiplicity - 1)) % 2:
            raise ValueError(
                f"MoleculeRecord: {self.n_electrons} electrons cannot have multiplicity {self.multiplicity}"
            )

    @classmethod
    def from_arrays(cls, numbers: Sequence[int], positions, charge: int = 0, multiplicity: int | None = None):
        """Build from arrays; the default multiplicity is the lowest one the electron count allows (1 or 2)."""
        numbers = tuple(int(z) for z in np.asarray(numbers).reshape(-1))
        pos = np.round(np.asarray(positions, dtype=np.float64).reshape(-1, 3), _POSITION_DECIMALS)
        if multiplicity is None:
            multiplicity = 1 + (sum(numbers) - int(charge)) % 2
        return cls(numbers, tuple(tuple(float(c) for c in row) for row in pos), int(charge), int(multiplicity))

    @classmethod
    def from_mol(cls, mol, conf_id: int = -1, multiplicity: int | None = None):
        """From an RDKit Mol with explicit hydrogens and a conformer; charge = sum of formal charges."""
        if mol.GetNumConformers() == 0:
            raise ValueError("MoleculeRecord.from_mol: the molecule has no conformer")
        numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
        charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
        return cls.from_arrays(numbers, mol.GetConformer(conf_id).GetPositions(), charge, multiplicity)

    @property
    def n_electrons(self) -> int:
        return sum(self.numbers) - self.charge

    @property
    def open_shell(self) -> bool:
        return self.multiplicity != 1

    def positions_array(self) -> np.ndarray:
        return np.asarray(self.positions, dtype=np.float64)

    def hash_parts(self) -> dict:
        pos = np.round(self.positions_array(), _POSITION_DECIMALS) + 0.0  # +0.0 turns -0.0 into 0.0
        return {"numbers": list(self.numbers), "positions": pos, "charge": self.charge,
                "multiplicity": self.multiplicity}


def frontier_orbitals(energies, occupations, capacity: float = 2.0) -> tuple[float, float]:
    """(HOMO, LUMO) energies: highest orbital filled more than half, lowest filled less than half.

    ``energies``/``occupations`` are (n,) for spin-summed orbitals (``capacity`` 2) or (2, n) per spin channel
    (use ``capacity=1``); both channels are pooled.
    """
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    occ = np.asarray(occupations, dtype=np.float64).reshape(-1)
    if e.shape != occ.shape:
        raise ValueError(f"{e.size} orbital energies but {occ.size} occupations")
    occupied = occ > 0.5 * capacity
    if not occupied.any() or occupied.all():
        raise ValueError("frontier_orbitals: need at least one occupied and one empty orbital")
    return float(e[occupied].max()), float(e[~occupied].min())


@dataclass(frozen=True)
class XTBHook:
    """GFN2-xTB through tblite; optional BFGS geometry optimisation (ASE) before the final single point."""

    method: str = "GFN2-xTB"
    optimize: bool = False
    fmax: float = 0.05  # eV/Angstrom
    max_steps: int = 200
    accuracy: float = 1.0
    electronic_temperature: float = 300.0  # K, tblite's default Fermi smearing
    max_iterations: int = 250
    name: str = "xtb-gfn2"
    version: str = "1"

    def key(self, item: MoleculeRecord) -> str:
        settings = {k: getattr(self, k) for k in ("method", "optimize", "fmax", "max_steps", "accuracy",
                                                   "electronic_temperature", "max_iterations")}
        return content_hash(self.name, self.version, settings, item.hash_parts())

    def compute_one(self, item: MoleculeRecord) -> dict:
        from shared.evaluation import require_package

        require_package("tblite", extra="dft")
        values: dict = {}
        positions = item.positions_array()
        if self.optimize:
            positions, values = self._optimize(item)
        result = self._calculator(item, positions).singlepoint()
        energies = np.asarray(result["orbital-energies"])
        occupations = np.asarray(result["orbital-occupations"])
        homo, lumo = frontier_orbitals(energies, occupations, capacity=2.0 if occupations.ndim == 1 else 1.0)
        dipole = np.asarray(result["dipole"]) * E_BOHR_TO_DEBYE
        values.update({
            "energy_eV": float(result["energy"]) * HARTREE_TO_EV,
            "homo_eV": homo * HARTREE_TO_EV,
            "lumo_eV": lumo * HARTREE_TO_EV,
            "gap_eV": (lumo - homo) * HARTREE_TO_EV,
            "dipole_D": float(np.linalg.norm(dipole)),
            "dipole_vector_D": dipole.tolist(),
        })
        return values

    def _calculator(self, item: MoleculeRecord, positions: np.ndarray):
        from tblite.interface import Calculator

        calc = Calculator(self.method, np.asarray(item.numbers), positions * ANGSTROM_TO_BOHR,
                          charge=float(item.charge), uhf=item.multiplicity - 1)
        calc.set("verbosity", 0)
        calc.set("accuracy", self.accuracy)
        calc.set("max-iter", self.max_iterations)
        calc.set("temperature", self.electronic_temperature * 3.166808578545117e-06)  # K -> Hartree
        return calc

    def _optimize(self, item: MoleculeRecord) -> tuple[np.ndarray, dict]:
        from shared.evaluation import require_package

        require_package("ase", extra="chem")
        from ase import Atoms
        from ase.optimize import BFGS
        from tblite.ase import TBLite

        atoms = Atoms(numbers=list(item.numbers), positions=item.positions_array())
        atoms.calc = TBLite(method=self.method, charge=item.charge, multiplicity=item.multiplicity,
                            accuracy=self.accuracy, max_iterations=self.max_iterations,
                            electronic_temperature=self.electronic_temperature, verbosity=0)
        optimizer = BFGS(atoms, logfile=None)
        converged = bool(optimizer.run(fmax=self.fmax, steps=self.max_steps))
        return atoms.get_positions(), {
            "optimized": True,
            "converged": converged,
            "n_steps": int(optimizer.nsteps),
            "positions_A": atoms.get_positions().tolist(),
        }


@dataclass(frozen=True)
class PySCFHook:
    """B3LYP(VWN-RPA)/6-31G(2df,p) with PySCF: HOMO, LUMO, gap, dipole; optional frequencies and Cv."""

    xc: str = "b3lypg"
    basis: str = "qm9"
    density_fit: bool = False
    frequencies: bool = False
    allow_open_shell: bool = False
    conv_tol: float = 1e-9
    max_cycle: int = 100
    grid_level: int = 3
    max_memory_mb: int = 2000
    name: str = "pyscf-b3lyp"
    version: str = "2"

    def key(self, item: MoleculeRecord) -> str:
        settings = {k: getattr(self, k) for k in ("xc", "basis", "density_fit", "frequencies",
                                                   "allow_open_shell", "conv_tol", "max_cycle", "grid_level")}
        return content_hash(self.name, self.version, settings, item.hash_parts())

    def compute_one(self, item: MoleculeRecord) -> dict:
        from shared.evaluation import require_package

        require_package("pyscf", extra="dft")
        from pyscf import dft, gto
        from pyscf.data.elements import ELEMENTS

        if item.open_shell and not self.allow_open_shell:
            raise OpenShellError(
                f"open-shell molecule ({item.n_electrons} electrons, multiplicity {item.multiplicity}); "
                "pass allow_open_shell=True to run UKS"
            )
        atoms = [(int(z), pos) for z, pos in zip(item.numbers, item.positions)]
        basis = self.basis
        if basis == QM9_BASIS_NAME:
            basis = qm9_basis(ELEMENTS[z] for z, _ in atoms)
        mol = gto.M(
            atom=atoms,
            basis=basis, charge=item.charge, spin=item.multiplicity - 1, unit="Angstrom",
            verbose=0, max_memory=self.max_memory_mb,
        )
        mf = dft.UKS(mol) if item.open_shell else dft.RKS(mol)
        mf.xc = self.xc
        mf.grids.level = self.grid_level
        mf.conv_tol = self.conv_tol
        mf.max_cycle = self.max_cycle
        if self.density_fit:
            mf = mf.density_fit()
        energy = mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(f"SCF did not converge in {self.max_cycle} cycles (last energy {energy:.8f} Ha)")
        occupations = np.asarray(mf.mo_occ)
        homo, lumo = frontier_orbitals(mf.mo_energy, occupations, capacity=1.0 if occupations.ndim == 2 else 2.0)
        dipole = np.asarray(mf.dip_moment(unit="Debye", verbose=0))
        values = {
            "energy_eV": float(energy) * HARTREE_TO_EV,
            "homo_eV": homo * HARTREE_TO_EV,
            "lumo_eV": lumo * HARTREE_TO_EV,
            "gap_eV": (lumo - homo) * HARTREE_TO_EV,
            "dipole_D": float(np.linalg.norm(dipole)),
            "dipole_vector_D": dipole.tolist(),
        }
        if self.frequencies:
            values.update(_harmonic_thermo(mf))
        return values


def _harmonic_thermo(mf) -> dict:
    """Harmonic frequencies (cm^-1), ZPVE (eV) and Cv at 298.15 K (cal/(mol K)) from the analytic Hessian."""
    from pyscf.hessian import thermo

    hessian = mf.Hessian().kernel()
    analysis = thermo.harmonic_analysis(mf.mol, hessian)
    frequencies = np.asarray(analysis["freq_wavenumber"])
    if np.iscomplexobj(frequencies):
        # imaginary modes come back as complex numbers; report them as negative wavenumbers
        frequencies = np.where(np.abs(frequencies.imag) > 0, -np.abs(frequencies.imag), frequencies.real)
    result = thermo.thermo(mf, analysis["freq_au"], 298.15, 101325)
    return {
        "frequencies_cm1": frequencies.tolist(),
        "n_imaginary": int((frequencies < 0).sum()),
        "zpve_eV": float(result["ZPE"][0]) * HARTREE_TO_EV,
        "cv_cal_mol_K": float(result["Cv_tot"][0]) * _HARTREE_PER_K_TO_CAL_PER_MOL_K,
    }


def dft_input_problem(mol) -> str | None:
    """Why ``mol`` (RDKit, explicit H, one conformer) must not be handed to a quantum-chemistry hook, or None.

    The reason starts with its class: ``open shell: ...`` (radicals or an odd electron count: a closed-shell
    single point would misdescribe it), ``refused geometry: ...`` (no 3-D coordinates: a 2-D depiction; bonds the
    coordinates do not show; non-bonded atoms as close as bonded ones; a bond shorter than any of its element pair
    in QM9). Distances are judged by QM9's own bond windows (``molgen.metrics.windows``); bonds QM9 never has
    (H-H, elements beyond F) are not judged. Several fragments are refused: embedded or generated together they overlap.
    """
    from rdkit import Chem

    from molgen.metrics.windows import bond_window_tables, max_z, perceived_bonds

    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    electrons = sum(numbers) - sum(a.GetFormalCharge() for a in mol.GetAtoms())
    if radicals or electrons % 2:
        return (f"open shell: {radicals or 1} unpaired electron(s); a closed-shell calculation would misdescribe "
                f"it")
    if mol.GetNumConformers() == 0:
        return "refused geometry: no coordinates"
    conf = mol.GetConformer()
    pos = conf.GetPositions()
    if not conf.Is3D() or (len(numbers) > 3 and np.ptp(pos[:, 2]) == 0 and np.ptp(pos[:, 0]) > 0
                           and np.ptp(pos[:, 1]) > 0 and not mol.GetRingInfo().NumRings()):
        return "refused geometry: 2-D coordinates (a drawing, not a geometry); embed or optimise it in 3-D first"
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return (f"refused geometry: {fragments} disconnected fragments; compute each fragment on its own (their "
                f"relative placement is not a geometry)")
    judged = [z <= max_z() for z in numbers]
    graph = {(min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
             for b in mol.GetBonds()}
    graph = {(i, j) for i, j in graph if judged[i] and judged[j]}
    shown = perceived_bonds([z if ok else 0 for z, ok in zip(numbers, judged)], pos)

    def name(i: int) -> str:
        return f"{mol.GetAtomWithIdx(i).GetSymbol()}{i + 1}"

    def dist(i: int, j: int) -> float:
        return float(np.linalg.norm(pos[i] - pos[j]))

    _, by_pair = bond_window_tables()

    def window(i: int, j: int) -> tuple[float, float]:
        low, high = by_pair[min(numbers[i], numbers[j]), max(numbers[i], numbers[j])].tolist()
        return low, high

    for i, j in sorted(graph - shown):
        if math.isnan(window(i, j)[0]):  # a bond QM9 never has (H-H, O-O, ...): no data to judge it by
            continue
        return f"refused geometry: bond {name(i)}-{name(j)} is {dist(i, j):.2f} A, beyond QM9's bonds of this pair"
    for i, j in sorted(shown - graph):
        return f"refused geometry: non-bonded atoms {name(i)} and {name(j)} are {dist(i, j):.2f} A apart, as close " \
               f"as bonded atoms"
    for i, j in sorted(graph):
        low = window(i, j)[0]
        if dist(i, j) < low:  # False for NaN: pairs without a window are not judged
            return f"refused geometry: bond {name(i)}-{name(j)} is {dist(i, j):.2f} A, shorter than QM9's bonds " \
                   f"of this pair ({low:.2f} A)"
    return None


# name -> hook class: the QM methods `molgen dft --method`, campaigns and graphgen's DFT runs choose from
QM_HOOKS: Registry[type] = Registry("QM method")
QM_HOOKS.register("xtb", XTBHook)
QM_HOOKS.register("b3lyp", PySCFHook)
