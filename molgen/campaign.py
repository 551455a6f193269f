"""molgen campaigns: property-conditioned 3D molecules -> filters -> xTB / B3LYP / regressor checks -> ranking.

The domain side of ``shared.campaign`` (which owns shards, resume, executors and the report). Spec keys:

* ``target``: any of alpha (Bohr^3), gap, homo, lumo (eV), mu (D), Cv (cal/(mol K)); checked against the model's
  training range (beyond the OOD margin is an error) before any work.
* ``filters``: ``valid`` (RDKit sanitises), ``closed_shell``, ``connected`` (one fragment), ``geometry`` (bond
  lengths, angles, clashes), ``novel`` (not in the generator's QM9 training half; needs the prepared QM9),
  ``unique`` (first of each canonical SMILES), ``max_atoms: N``, ``elements: [H, C, N, O, F]``.
* ``relax``: ``mmff`` (the default), ``xtb`` or ``none``: every candidate is relaxed (``molgen.relax``) before the
  filters and verifiers see it, so xTB / B3LYP / regressor values belong to a minimum, not to the generated
  (strained) geometry; each candidate keeps its strain (``relax_energy_eV``, ``relax_heavy_rmsd_A``, shown beside
  the top-k in the report), and the automatic filter ``relaxed_intact`` drops candidates that could not be relaxed
  or whose bonding changed on relaxation. ``none`` verifies generated geometries (the report says so).
* ``verify``: ``xtb`` (GFN2-xTB single point), ``b3lyp`` (QM9's level, PySCF; slow), ``regressor`` (the shipped
  property regressors), each on the relaxed geometry.
* ``rank_by``: ``METHOD:PROPERTY`` — the distance of a verified value to the target (``xtb:gap``,
  ``regressor:mu``), or, for a property that is not targeted, the value itself, lowest first
  (``xtb:energy``). xTB orbital energies are not B3LYP's: rank xTB gaps against xTB-scale targets, or use
  ``b3lyp``/``regressor`` for QM9-scale ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.campaign import CampaignSpec, plot_funnel, plot_target_histograms, rank_label

__all__ = ["MolgenCampaign", "RegressorHook"]

FILTERS = ("valid", "closed_shell", "connected", "geometry", "novel", "unique", "max_atoms", "elements")
RELAX_CHOICES = ("mmff", "xtb", "none")
DEFAULT_RELAX = "mmff"
RELAX_FILTER = "relaxed_intact"  # added automatically when candidates are relaxed
VERIFIERS = ("xtb", "b3lyp", "regressor")
# a targeted property -> the name each verifier reports it under
VERIFIED_NAMES = {
    "xtb": {"gap": "gap_eV", "homo": "homo_eV", "lumo": "lumo_eV", "mu": "dipole_D", "energy": "energy_eV"},
    "b3lyp": {"gap": "gap_eV", "homo": "homo_eV", "lumo": "lumo_eV", "mu": "dipole_D", "energy": "energy_eV"},
    "regressor": {p: p for p in ("alpha", "gap", "homo", "lumo", "mu", "Cv")},
}
UNITS = {"alpha": "Bohr^3", "gap": "eV", "homo": "eV", "lumo": "eV", "mu": "D", "Cv": "cal/(mol K)",
         "energy": "eV"}

_GENERATORS: dict[str, Any] = {}  # per process: workers load the model once
_REGRESSORS: dict[str, Any] = {}
_REFERENCE: dict[str, set] = {}


def _generator(model: str):
    if model not in _GENERATORS:
        from molgen.checkpoint import load_generator
        from molgen.sampling import load_default_generator

        _GENERATORS[model] = load_default_generator() if model == "default" else load_generator(model)
    return _GENERATORS[model]


def _training_smiles(path: str) -> set:
    if path not in _REFERENCE:
        from molgen.data import QM9Dataset

        _REFERENCE[path] = set(QM9Dataset(path, "train_generator").smiles())
    return _REFERENCE[path]


@dataclass(frozen=True)
class RegressorHook:
    """The shipped QM9 property regressors on one molecule (an SDF mol block): ``{property: value}``."""

    properties: tuple[str, ...]
    name: str = "molgen-regressor"
    version: str = "1"

    def key(self, item: str) -> str:
        from shared.hooks import content_hash

        # the models' bytes are part of the key: retrained regressors must not reuse an older model's cached values
        return content_hash(self.name, self.version, list(self.properties), _regressor_hashes(self.properties), item)

    def compute_one(self, item: str) -> dict:
        from rdkit import Chem

        from molgen.pretrained import load_pretrained
        from molgen.representation import MolBatch

        mol = Chem.MolFromMolBlock(item, sanitize=False, removeHs=False)
        batch = MolBatch.from_mols([mol])
        out = {}
        for prop in self.properties:
            if prop not in _REGRESSORS:
                _REGRESSORS[prop] = load_pretrained(prop)
            out[prop] = float(_REGRESSORS[prop].predict_batch(batch)[0])
        return out


@dataclass
class MolgenCampaign:
    """``shared.campaign.CampaignDomain`` for molgen. ``qm9`` is the prepared QM9 file (``novel`` needs it)."""

    qm9: str | None = None
    name: str = "molgen"
    _checked: dict = field(default_factory=dict, repr=False)

    def default_model_file(self):
        from molgen.pretrained import pretrained_generator_path

        return pretrained_generator_path()

    # --- validation ------------------------------------------------------------------------------------------

    def validate(self, spec: CampaignSpec) -> None:
        from molgen.sampling import canonical_property, check_condition

        unknown = sorted(set(spec.filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; molgen knows {', '.join(FILTERS)}")
        for name, value in spec.filters.items():
            if name == "max_atoms" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"filters.max_atoms must be a positive integer, got {value!r}")
            if name == "elements":
                self._element_numbers(value)
            if name not in ("max_atoms", "elements") and not isinstance(value, bool):
                raise ValueError(f"filters.{name} must be true or false, got {value!r}")
        if spec.filters.get("novel"):
            if not self.qm9 or not Path(self.qm9).is_file():
                raise ValueError("filters.novel needs the prepared QM9 file (--qm9 FILE, from molgen.data."
                                 "prepare_qm9 or 'molgen train'); drop the filter or pass it")
        bad = sorted(set(spec.verify) - set(VERIFIERS))
        if bad:
            raise ValueError(f"unknown verifier(s) {bad}; molgen knows {', '.join(VERIFIERS)}")
        if spec.relax is not None and spec.relax not in RELAX_CHOICES:
            raise ValueError(f"relax: {spec.relax!r}; molgen relaxes with {', '.join(RELAX_CHOICES)}")
        target = {canonical_property(k): v for k, v in spec.target.items()}
        generator = _generator(spec.model)
        check_condition(generator, target)  # unknown properties and impossible values fail here
        if spec.guidance_scale != 1.0 and not target:
            raise ValueError("guidance_scale needs a target")
        if spec.rank_by is not None:
            method, sep, prop = spec.rank_by.partition(":")
            if not sep or method not in VERIFIERS:
                raise ValueError(f"rank_by {spec.rank_by!r}: expected METHOD:PROPERTY with METHOD one of "
                                 f"{', '.join(VERIFIERS)}, e.g. xtb:gap")
            if method not in spec.verify:
                raise ValueError(f"rank_by {spec.rank_by!r} ranks by {method}, which is not in verify {spec.verify}")
            key = prop if prop == "energy" else canonical_property(prop)
            if key not in VERIFIED_NAMES[method]:
                raise ValueError(f"rank_by {spec.rank_by!r}: {method} does not report {prop}; it reports "
                                 f"{', '.join(VERIFIED_NAMES[method])}")

    @staticmethod
    def _element_numbers(symbols) -> set[int]:
        from rdkit import Chem

        if not isinstance(symbols, list) or not symbols:
            raise ValueError(f"filters.elements must be a list of element symbols, got {symbols!r}")
        table = Chem.GetPeriodicTable()
        out = set()
        for symbol in symbols:
            try:
                out.add(table.GetAtomicNumber(str(symbol)))
            except RuntimeError:
                raise ValueError(f"filters.elements: {symbol!r} is not an element symbol") from None
        return out

    # --- generation ------------------------------------------------------------------------------------------

    def generate_shard(self, spec: CampaignSpec, index: int, seed: int, n: int) -> list[dict]:
        from rdkit import Chem

        from molgen.metrics.chemistry import check_molecule
        from molgen.metrics.geometry import geometry_checks
        from molgen.sampling import canonical_property, generate

        target = {canonical_property(k): v for k, v in spec.target.items()}
        method = _relax_method(spec)
        # screen=1: the campaign's own filters, verification and ranking are its screen (a generate-and-screen
        # default would multiply the sampling of every shard)
        result = generate(_generator(spec.model), n, condition=target, guidance_scale=spec.guidance_scale,
                          steps=spec.steps, seed=seed, batch_size=n, relax=method, screen=1)
        mols = result.mols()
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")  # invalid molecules are a filter's result, not console noise
        # on the relaxed geometry when relaxed: that is the molecule the campaign hands over
        geometry = geometry_checks(result.batch)["geometry_ok"].tolist() if spec.filters.get("geometry") else None
        allowed = self._element_numbers(spec.filters["elements"]) if "elements" in spec.filters else None
        reference = _training_smiles(self.qm9) if spec.filters.get("novel") else None
        out = []
        for k, mol in enumerate(mols):
            check = check_molecule(mol)
            numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
            filters = {}
            if spec.filters.get("valid"):
                filters["valid"] = check.valid
            if spec.filters.get("closed_shell"):
                filters["closed_shell"] = check.closed_shell
            if spec.filters.get("connected"):
                filters["connected"] = check.connected
            if geometry is not None:
                filters["geometry"] = bool(geometry[k])
            if "max_atoms" in spec.filters:
                filters["max_atoms"] = len(numbers) <= spec.filters["max_atoms"]
            if allowed is not None:
                filters["elements"] = set(numbers) <= allowed
            if reference is not None:
                filters["novel"] = check.smiles is not None and check.smiles not in reference
            values = {"n_atoms": len(numbers), "smiles": check.smiles or ""}
            if method is not None:
                relaxed = result.relax[k]
                filters[RELAX_FILTER] = relaxed.sound
                values.update({name: value for name, value in relaxed.fields().items()
                               if name in ("relax_energy_eV", "relax_heavy_rmsd_A", "relax_status", "relax_reason",
                                            "relax_bonding_changed")
                               and value is not None})
            out.append({"record": Chem.MolToMolBlock(mol, kekulize=False), "key": check.smiles,
                        "filters": filters, "values": values})
        RDLogger.EnableLog("rdApp.*")
        return out

    # --- report ---------------------------------------------------------------------------------------------

    def report_notes(self, spec: CampaignSpec) -> list[str]:
        method = _relax_method(spec)
        if method is None:
            return ["Verified on the generated geometries (relax: none): values of strained molecules are not those "
                    "of the molecules' minima."]
        name = {"mmff": "MMFF94", "xtb": "GFN2-xTB"}[method]
        return [f"Filters and verification ran on {name}-relaxed geometries; candidates that could not be relaxed "
                f"or whose bonding changed on relaxation fail the filter {RELAX_FILTER}. Strain = relaxation energy "
                f"({name}, eV per molecule) and heavy-atom RMSD between the generated and relaxed geometry."]

    def report_columns(self, spec: CampaignSpec) -> list[str]:
        from molgen.sampling import canonical_property

        verified = []
        for method in spec.verify:
            for prop in spec.target:
                name = VERIFIED_NAMES[method].get(canonical_property(prop))
                if name is not None:
                    verified.append(f"{method}:{name}")
        strain = ["relax_energy_eV", "relax_heavy_rmsd_A"] if _relax_method(spec) else []
        return ["smiles", *verified, *strain]

    # --- verification and ranking ----------------------------------------------------------------------------

    def verification(self, spec: CampaignSpec, method: str):
        from molgen.hooks import QM_HOOKS
        from molgen.sampling import canonical_property

        if method == "regressor":
            props = tuple(canonical_property(p) for p in spec.target) or ("gap",)
            return RegressorHook(props), lambda cand: cand["record"]
        hook = QM_HOOKS[method]()
        return hook, _record_of

    def rank_value(self, spec: CampaignSpec, candidate: dict) -> float | None:
        if spec.rank_by is None:
            return None
        from molgen.sampling import canonical_property

        method, _, prop = spec.rank_by.partition(":")
        key = prop if prop == "energy" else canonical_property(prop)
        result = candidate["verified"].get(method)
        if result is None or result["status"] != "ok":
            return None
        value = result["values"].get(VERIFIED_NAMES[method][key])
        if value is None:
            return None
        targets = {canonical_property(k): v for k, v in spec.target.items()}
        return abs(float(value) - float(targets[key])) if key in targets else float(value)

    # --- outputs ---------------------------------------------------------------------------------------------

    def write_outputs(self, spec: CampaignSpec, candidates: list[dict], top: list[dict], out_dir: Path) -> list:
        from shared.io import atomic_write_text

        blocks = []
        for cand in top:
            fields = {"id": cand["id"], "rank": cand["rank"], "rank_value": cand.get("rank_value"),
                      "smiles": cand["values"].get("smiles", "")}
            for name in ("relax_energy_eV", "relax_heavy_rmsd_A"):
                if name in cand["values"]:
                    fields[name] = cand["values"][name]
            for method, result in cand["verified"].items():
                for name, value in result["values"].items():
                    if isinstance(value, (int, float)):
                        fields[f"{method}_{name}"] = value
            props = "".join(f">  <{k}>\n{v}\n\n" for k, v in fields.items())
            blocks.append(cand["record"].rstrip("\n") + "\n" + props + "$$$$\n")
        atomic_write_text(out_dir / "top_k.sdf", "".join(blocks))
        figures = [plot_funnel(spec, candidates, out_dir / "funnel.png")]
        achieved, judges = self._achieved(spec, candidates)
        figures += plot_target_histograms(spec, achieved, UNITS, out_dir, judges)
        if top:
            figures.append(_grid_image(top, out_dir / "top_k.png", rank_label(spec, UNITS)))
        return figures

    def _achieved(self, spec: CampaignSpec, candidates: list[dict]) -> tuple[dict, dict]:
        """Per targeted property, the verified values of the filtered candidates and the verifier that gave them
        (the first that reports it: regressor, then b3lyp, then xtb)."""
        from molgen.sampling import canonical_property

        out, judges = {}, {}
        for name in spec.target:
            key = canonical_property(name)
            for method in ("regressor", "b3lyp", "xtb"):
                if method in spec.verify and key in VERIFIED_NAMES[method]:
                    values = [c["verified"][method]["values"].get(VERIFIED_NAMES[method][key])
                              for c in candidates if c["verified"].get(method, {}).get("status") == "ok"]
                    out[name] = [float(v) for v in values if v is not None]
                    judges[name] = method
                    break
        return out, judges


def _regressor_hashes(properties: tuple[str, ...]) -> list[str]:
    import hashlib

    from molgen.pretrained import pretrained_path

    out = []
    for prop in properties:
        path = pretrained_path(prop)
        stat = path.stat()
        cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
        if cache_key not in _FILE_HASHES:
            _FILE_HASHES[cache_key] = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append(_FILE_HASHES[cache_key])
    return out


_FILE_HASHES: dict = {}


def _relax_method(spec: CampaignSpec) -> str | None:
    method = DEFAULT_RELAX if spec.relax is None else spec.relax
    return None if method == "none" else method


def _record_of(candidate: dict):
    from rdkit import Chem

    from molgen.hooks import MoleculeRecord

    return MoleculeRecord.from_mol(Chem.MolFromMolBlock(candidate["record"], sanitize=False, removeHs=False))


def _grid_image(top: list[dict], path: Path, label: str = "") -> Path:
    """The top-k as 2D drawings with rank and ranked value (RDKit; no display)."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    from shared.io import atomic_write_bytes

    mols, legends = [], []
    for cand in top:
        smiles = cand["values"].get("smiles")
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        if mol is None:
            continue
        mols.append(mol)
        legends.append(f"#{cand['rank']}  {label} {cand.get('rank_value', 0):.3g}")
    image = Draw.MolsToGridImage(mols, molsPerRow=min(5, max(len(mols), 1)), subImgSize=(220, 180),
                                 legends=legends, returnPNG=True)
    data = image if isinstance(image, bytes) else image.data
    return atomic_write_bytes(path, data)
