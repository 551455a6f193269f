"""Molecular graphs to quantum chemistry: 3D embedding, a backend hook, property distributions.

graphgen's molecules are 2D graphs (SMILES). To hand them to xTB or DFT each one is embedded in 3D with explicit
hydrogens (RDKit ETKDG v3, K conformers — random starting coordinates, then each assignment of unassigned
stereocentres, where that fails — each relaxed with MMFF94 (UFF where MMFF lacks parameters), the lowest-energy
one kept), optionally optimised further by a geometry hook (GFN2-xTB), then given to a single-point
hook. The backends belong to molgen (``molgen.hooks``); this module never imports them: the CLI layer passes a
backend object and a ``make_record(mol)`` function in (docs/architecture.md), and everything runs through
``shared.hooks.run_hook``, so results are cached per molecule, resumable and parallel, and a failure is a
recorded reason (unreadable SMILES, invalid valence, open shell, embedding failed, SCF not converged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.hooks import content_hash

__all__ = [
    "DFT_PROPERTIES",
    "EmbeddingError",
    "EmbeddingSettings",
    "GeometryRefused",
    "GraphDFTHook",
    "InvalidMolecule",
    "OpenShellMolecule",
    "compare_distributions",
    "embed_molecule",
    "plot_property_histograms",
]

# reported per molecule and compared with the reference distribution (molgen's units: eV, Debye)
DFT_PROPERTIES = ("homo_eV", "lumo_eV", "gap_eV", "dipole_D")
PROPERTY_LABELS = {"homo_eV": "HOMO (eV)", "lumo_eV": "LUMO (eV)", "gap_eV": "HOMO-LUMO gap (eV)",
                   "dipole_D": "dipole moment (D)", "energy_eV": "total energy (eV)"}


class InvalidMolecule(ValueError):
    """The SMILES is not a chemically valid molecule (RDKit sanitisation fails)."""


class OpenShellMolecule(ValueError):
    """The molecule has unpaired electrons (a radical); closed-shell methods would misdescribe it."""


class GeometryRefused(ValueError):
    """A geometry that a check refuses (fragments, broken bonds) is never handed to quantum chemistry."""


class EmbeddingError(RuntimeError):
    """No 3D conformer could be generated."""


@dataclass(frozen=True)
class EmbeddingSettings:
    """How a graph becomes 3D: ETKDG v3 conformers, a force-field relaxation, the lowest-energy one kept."""

    conformers: int = 3
    force_field: str = "mmff"  # mmff (UFF where MMFF has no parameters), uff, or none
    max_iterations: int = 2000  # force-field steps per conformer
    seed: int = 0

    def __post_init__(self) -> None:
        if self.conformers < 1:
            raise ValueError(f"conformers must be >= 1, got {self.conformers}")
        if self.force_field not in ("mmff", "uff", "none"):
            raise ValueError(f"force_field must be mmff, uff or none, got {self.force_field!r}")


def parse_molecule(smiles: str):
    """A sanitised RDKit Mol, or ``InvalidMolecule`` / ``ValueError`` (unreadable) naming what is wrong."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # failures are reported as reasons, not printed by RDKit's logger
    try:
        raw = Chem.MolFromSmiles(smiles, sanitize=False) if smiles else None
        if raw is None:
            raise ValueError(f"unreadable SMILES {smiles[:60]!r}")
        problems = Chem.DetectChemistryProblems(raw)
        if problems:
            raise InvalidMolecule("invalid molecule: " + "; ".join(p.Message() for p in problems[:3]))
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise InvalidMolecule("invalid molecule: RDKit sanitisation failed")
    finally:
        RDLogger.EnableLog("rdApp.*")
    return mol


def unpaired_electrons(mol) -> int:
    """Radical electrons RDKit assigns, or 1 if the electron count is odd (then some must be unpaired)."""
    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    electrons = sum(atom.GetAtomicNum() + atom.GetTotalNumHs() - atom.GetFormalCharge() for atom in mol.GetAtoms())
    return max(radicals, electrons % 2)


def embed_molecule(mol, settings: EmbeddingSettings = EmbeddingSettings()) -> tuple[Any, dict]:
    """``(mol with explicit H and one conformer, info)``: the lowest force-field energy of K ETKDG conformers."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol, conf_ids, isomers_tried = _embed_conformers(mol, settings)
    if not conf_ids:
        raise EmbeddingError("embedding failed: ETKDG found no 3D conformer"
                             + (f" for any of {isomers_tried} stereoisomers" if isomers_tried > 1 else ""))
    field = settings.force_field
    if field == "mmff" and not AllChem.MMFFHasAllMoleculeParams(mol):
        field = "uff"
    if field == "uff" and not AllChem.UFFHasAllMoleculeParams(mol):
        field = "none"
    energies = [0.0] * len(conf_ids)
    converged = [True] * len(conf_ids)
    if field != "none":
        optimize = AllChem.MMFFOptimizeMoleculeConfs if field == "mmff" else AllChem.UFFOptimizeMoleculeConfs
        out = optimize(mol, numThreads=1, maxIters=settings.max_iterations)
        converged = [flag == 0 for flag, _ in out]
        energies = [float(energy) for _, energy in out]
    best = int(np.argmin(energies))
    single = Chem.Mol(mol, confId=conf_ids[best])  # confId copies only that conformer
    info = {"force_field": field, "conformers_embedded": len(conf_ids),
            "force_field_energy_kcal_mol": energies[best] if field != "none" else None,
            "force_field_converged": converged[best]}
    return single, info


_MAX_STEREOISOMERS = 16


def _embed_conformers(mol, settings: EmbeddingSettings):
    """``(mol with H, conformer ids, stereoisomers tried)``; ids are empty when every attempt failed.

    ETKDG, then random starting coordinates (strained rings), then, for SMILES with unassigned stereocentres
    (QM9's cages), each assignment in turn: a random one may be geometrically impossible in a small polycycle.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    def attempt(candidate):
        withh = Chem.AddHs(candidate)
        for random_coords in (False, True):
            params = rdDistGeom.ETKDGv3()
            params.randomSeed = settings.seed
            params.numThreads = 1  # deterministic; the hook runner parallelises over molecules instead
            params.useRandomCoords = random_coords
            ids = list(rdDistGeom.EmbedMultipleConfs(withh, settings.conformers, params))
            if ids:
                return withh, ids
        return withh, []

    withh, ids = attempt(mol)
    if ids:
        return withh, ids, 1
    options = StereoEnumerationOptions(onlyUnassigned=True, unique=True, maxIsomers=_MAX_STEREOISOMERS)
    tried = 1
    for isomer in EnumerateStereoisomers(Chem.Mol(mol), options=options):
        tried += 1
        candidate, ids = attempt(isomer)
        if ids:
            return candidate, ids, tried
    return withh, [], tried


def _set_positions(mol, positions) -> None:
    from rdkit.Geometry import Point3D

    conformer = mol.GetConformer()
    for index, (x, y, z) in enumerate(np.asarray(positions, dtype=float)):
        conformer.SetAtomPosition(index, Point3D(x, y, z))


@dataclass(frozen=True)
class GraphDFTHook:
    """A ``shared.hooks`` hook over SMILES: parse, reject open shells, embed, (optimise,) then ``backend``.

    ``backend`` and ``optimizer`` are hooks over records built by ``make_record(mol)`` (e.g. molgen's
    ``XTBHook``/``PySCFHook`` with ``MoleculeRecord.from_mol``); ``optimizer`` must return ``positions_A``. All
    three must pickle, for process pools. Values: the backend's plus the embedding's and the 3D geometry.
    ``check(mol3d) -> reason | None`` (e.g. ``molgen.hooks.dft_input_problem``) refuses a geometry before the
    backend sees it. Molecules of several fragments are refused before embedding: ETKDG places them on top of
    each other.
    """

    backend: Any
    make_record: Callable[[Any], Any]
    embedding: EmbeddingSettings = EmbeddingSettings()
    optimizer: Any = None
    check: Callable[[Any], str | None] | None = None
    name: str = "graphgen-embedded"
    version: str = "3"  # 2: stereoisomer fallback for embedding; 3: fragments and checked geometries refused

    def key(self, smiles: str) -> str:
        # the backends are frozen dataclasses: their repr lists every setting that changes a result
        check = None if self.check is None else f"{self.check.__module__}.{self.check.__qualname__}"
        return content_hash(self.name, self.version, asdict(self.embedding), repr(self.backend),
                            repr(self.optimizer), check, smiles)

    def compute_one(self, smiles: str) -> dict:
        from rdkit import Chem

        mol = parse_molecule(smiles)
        unpaired = unpaired_electrons(mol)
        if unpaired:
            raise OpenShellMolecule(f"open shell: {unpaired} unpaired electron(s) (radical); "
                                    "closed-shell single points would misdescribe it")
        fragments = len(Chem.GetMolFrags(mol))
        if fragments > 1:
            raise GeometryRefused(f"refused geometry: {fragments} disconnected fragments; compute each fragment on "
                                  f"its own (embedded together they overlap)")
        mol3d, values = embed_molecule(mol, self.embedding)
        if self.optimizer is not None:
            optimized = self.optimizer.compute_one(self.make_record(mol3d))
            _set_positions(mol3d, optimized["positions_A"])
            values["optimized"] = True
            values["optimizer_converged"] = bool(optimized.get("converged", True))
        problem = self.check(mol3d) if self.check is not None else None
        if problem:
            raise GeometryRefused(problem)
        values.update(self.backend.compute_one(self.make_record(mol3d)))
        values.update({
            "smiles": Chem.MolToSmiles(mol),
            "n_heavy_atoms": mol.GetNumAtoms(),
            "numbers": [atom.GetAtomicNum() for atom in mol3d.GetAtoms()],
            "positions_A": np.round(mol3d.GetConformer().GetPositions(), 6).tolist(),
        })
        return values


def molblock(values: Mapping) -> str:
    """A V2000 mol block (no bonds) of a computed geometry, for writing the 3D results as SDF."""
    from rdkit import Chem

    mol = Chem.RWMol()
    for z in values["numbers"]:
        mol.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(mol.GetNumAtoms())
    mol.AddConformer(conformer, assignId=True)
    out = mol.GetMol()
    _set_positions(out, values["positions_A"])
    return Chem.MolToMolBlock(out)


def compare_distributions(values: Mapping[str, Sequence[float]],
                          reference: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """Per property: count, mean and std of ``values`` and ``reference``, and their 1-Wasserstein distance."""
    from scipy.stats import wasserstein_distance

    out = {}
    for name, sample in values.items():
        sample = np.asarray(sample, dtype=float)
        sample = sample[np.isfinite(sample)]
        row = {"n": int(sample.size), "mean": _stat(np.mean, sample), "std": _stat(np.std, sample)}
        ref = np.asarray(reference.get(name, []), dtype=float)
        ref = ref[np.isfinite(ref)]
        if ref.size:
            row.update({"reference_n": int(ref.size), "reference_mean": float(ref.mean()),
                        "reference_std": float(ref.std()),
                        "wasserstein": float(wasserstein_distance(sample, ref)) if sample.size else None})
        out[name] = row
    return out


def _stat(fn, sample: np.ndarray) -> float | None:
    return float(fn(sample)) if sample.size else None


def plot_property_histograms(values: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]],
                             out_dir, *, label: str = "generated", reference_label: str = "reference",
                             prefix: str = "dft") -> list:
    """One PNG per property: density histograms of ``values`` and ``reference`` on shared bins (no display)."""
    from shared.plots import histogram_comparison

    written = []
    for name, sample in values.items():
        samples = {reference_label: reference.get(name, []), label: sample}
        if not any(len(v) for v in samples.values()):
            continue
        written.append(histogram_comparison(samples, PROPERTY_LABELS.get(name, name),
                                            Path(out_dir) / f"{prefix}_{name}.png", bins=40))
    return written


def readable(smiles: str) -> bool:
    """Whether ``smiles`` parses at all (chemical validity is judged later, as a result, not a reading error)."""
    from rdkit import Chem, RDLogger

    if not smiles:
        return False
    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles, sanitize=False) is not None
    finally:
        RDLogger.EnableLog("rdApp.*")


def property_values(results: Sequence[Any], names: Sequence[str] = DFT_PROPERTIES) -> dict[str, np.ndarray]:
    """Per property, the values of the successful ``HookResult``s (input order)."""
    ok = [r.values for r in results if r.ok]
    return {name: np.asarray([v[name] for v in ok if v.get(name) is not None], dtype=float) for name in names}
