"""Crystal hooks on the ``shared.hooks`` protocol: ASE-calculator and CHGNet relaxation/energy, energy above
the convex hull against user-supplied reference entries, and VASP input export (MPRelaxSet).

Hook items are ``Structure.as_dict()`` dicts (a Structure is accepted too) so they pickle to any executor and
hash stably: the cache key covers the lattice matrix, atomic numbers and fractional coordinates (rounded to
1e-8) plus the hook's settings, never pymatgen's version tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from shared.evaluation import require_package
from shared.hooks import content_hash
from shared.io import atomic_write_text
from shared.registry import Registry

__all__ = ["CALCULATORS", "ASECalculatorHook", "CHGNetHook", "energy_above_hull", "export_vasp_inputs", "structure_key"]

_OPTIMIZERS = ("FIRE", "BFGS")


def _structure(item: Any):
    from pymatgen.core import Structure

    if isinstance(item, Structure):
        return item
    if isinstance(item, dict):
        return Structure.from_dict(item)
    raise ValueError(f"hook item must be a Structure.as_dict() dict or a Structure, got {type(item).__name__}")


def structure_key(item: Any) -> list:
    """Content of a structure for hashing: [lattice matrix, atomic numbers, fractional coordinates]."""
    s = _structure(item)
    return [np.round(s.lattice.matrix, 8).tolist(), [site.specie.Z for site in s],
            np.round(s.frac_coords, 8).tolist()]


def _callable_id(fn: Callable) -> str:
    """A stable name for a calculator factory (module.qualname, plus bound arguments of a functools.partial)."""
    inner = getattr(fn, "func", fn)
    ident = f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', type(inner).__name__)}"
    if inner is not fn:
        ident += f"(*{fn.args!r}, **{sorted(fn.keywords.items())!r})"
    return ident


class ASECalculatorHook:
    """Energy (and optionally a relaxation) of a structure with any ASE calculator.

    ``calculator_factory()`` returns a fresh calculator (e.g. ``ase.calculators.emt.EMT``); it must be
    picklable for process executors. With ``relax=True`` the positions (and the cell, with ``relax_cell``,
    through ASE's FrechetCellFilter) are optimised with FIRE or BFGS until the largest force is below ``fmax``
    eV/A; a run that needs more than ``steps`` steps raises "not converged after N steps" (a failed result).
    """

    version = "1"

    def __init__(self, calculator_factory: Callable[[], Any], *, relax: bool = True, fmax: float = 0.05,
                 steps: int = 200, optimizer: str = "FIRE", relax_cell: bool = False, name: str | None = None):
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
        if fmax <= 0 or steps < 1:
            raise ValueError(f"fmax must be > 0 and steps >= 1, got fmax={fmax}, steps={steps}")
        self.calculator_factory = calculator_factory
        self.relax, self.fmax, self.steps = bool(relax), float(fmax), int(steps)
        self.optimizer, self.relax_cell = optimizer, bool(relax_cell)
        inner = getattr(calculator_factory, "func", calculator_factory)
        self.name = name or f"ase-{getattr(inner, '__name__', 'calculator')}"

    def settings(self) -> dict:
        return {"calculator": _callable_id(self.calculator_factory), "relax": self.relax, "fmax": self.fmax,
                "steps": self.steps, "optimizer": self.optimizer, "relax_cell": self.relax_cell}

    def key(self, item: Any) -> str:
        return content_hash(self.name, self.version, self.settings(), structure_key(item))

    def compute_one(self, item: Any) -> dict:
        require_package("ase", extra="chem")
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(_structure(item))
        atoms.calc = self.calculator_factory()
        n_steps = 0
        if self.relax:
            n_steps = self._relax(atoms)
        energy = float(atoms.get_potential_energy())
        forces = np.asarray(atoms.get_forces())
        values = {"energy_eV": energy, "energy_per_atom_eV": energy / len(atoms),
                  "max_force_eV_A": float(np.linalg.norm(forces, axis=1).max()), "n_steps": n_steps}
        if self.relax:
            values["structure"] = AseAtomsAdaptor.get_structure(atoms).as_dict()
        return values

    def _relax(self, atoms) -> int:
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS, FIRE

        target = FrechetCellFilter(atoms) if self.relax_cell else atoms
        optimizer = {"FIRE": FIRE, "BFGS": BFGS}[self.optimizer](target, logfile=None)
        converged = optimizer.run(fmax=self.fmax, steps=self.steps)
        if not converged:
            raise RuntimeError(f"not converged after {self.steps} steps (fmax {self.fmax} eV/A)")
        return int(optimizer.nsteps)


_CHGNET_CALCULATORS: dict[str, Any] = {}


def chgnet_calculator():
    """The pretrained CHGNet as an ASE calculator on CPU, loaded once per process (its wheel ships weights)."""
    if "default" not in _CHGNET_CALCULATORS:
        require_package("chgnet", extra="dft")
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        _CHGNET_CALCULATORS["default"] = CHGNetCalculator(CHGNet.load(verbose=False), use_device="cpu")
    return _CHGNET_CALCULATORS["default"]


class CHGNetHook(ASECalculatorHook):
    """CHGNet (pretrained universal potential) energy, relaxing positions and cell by default (as CHGNet's
    StructOptimizer does: FIRE + FrechetCellFilter, fmax 0.1 eV/A)."""

    def __init__(self, *, relax: bool = True, fmax: float = 0.1, steps: int = 500, optimizer: str = "FIRE",
                 relax_cell: bool = True):
        super().__init__(chgnet_calculator, relax=relax, fmax=fmax, steps=steps, optimizer=optimizer,
                         relax_cell=relax_cell, name="chgnet")

    def settings(self) -> dict:
        import importlib.metadata

        settings = super().settings()
        try:
            settings["chgnet"] = importlib.metadata.version("chgnet")
        except importlib.metadata.PackageNotFoundError:
            settings["chgnet"] = None
        return settings


def energy_above_hull(compositions: Sequence[Any], energies_eV: Sequence[float | None],
                      reference_entries: Iterable[Any]) -> list[float | None]:
    """Energy above the convex hull (eV/atom; negative = below the hull) of each (composition, total energy)
    against ``reference_entries`` (pymatgen entries of one consistent energy scheme, e.g. the same
    calculator). Items with energy None (failed hooks) give None. Compositions may be Structures."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.entries.computed_entries import ComputedEntry

    if len(compositions) != len(energies_eV):
        raise ValueError(f"{len(compositions)} compositions but {len(energies_eV)} energies")
    diagram = PhaseDiagram(list(reference_entries))
    known = set(diagram.elements)
    out: list[float | None] = []
    for index, (composition, energy) in enumerate(zip(compositions, energies_eV)):
        if energy is None:
            out.append(None)
            continue
        composition = getattr(composition, "composition", composition)
        missing = set(composition.elements) - known
        if missing:
            raise ValueError(f"item {index} ({composition.reduced_formula}): elements "
                             f"{sorted(str(e) for e in missing)} have no reference entries")
        entry = ComputedEntry(composition, float(energy))
        _, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
        out.append(float(e_hull))
    return out


def export_vasp_inputs(structure: Any, directory: str | os.PathLike,
                       user_incar_settings: dict | None = None) -> dict[str, Path]:
    """Write MPRelaxSet INCAR, KPOINTS, POSCAR and a POTCAR.spec (one POTCAR symbol per line; no POTCAR
    files, which are licensed) into ``directory``; returns the written paths by file name."""
    require_package("pymatgen", extra="chem")
    from pymatgen.io.vasp.sets import MPRelaxSet

    input_set = MPRelaxSet(_structure(structure), user_incar_settings=user_incar_settings)
    directory = Path(directory)
    texts = {
        "INCAR": str(input_set.incar),
        "KPOINTS": str(input_set.kpoints),
        "POSCAR": input_set.poscar.get_str(),
        "POTCAR.spec": "\n".join(input_set.potcar_symbols) + "\n",
    }
    return {name: atomic_write_text(directory / name, text) for name, text in texts.items()}


def _emt_hook(**options) -> ASECalculatorHook:
    from ase.calculators.emt import EMT

    return ASECalculatorHook(EMT, relax_cell=True, **options)


# name -> hook factory(fmax=, steps=): the calculators `crysgen relax --calculator` and campaigns choose from
CALCULATORS: Registry[Callable[..., ASECalculatorHook]] = Registry("calculator")
CALCULATORS.register("chgnet", CHGNetHook)
CALCULATORS.register("emt", _emt_hook)
