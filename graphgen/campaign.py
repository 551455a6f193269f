"""graphgen campaigns: molecular graphs from a GDSS model -> filters -> xTB / B3LYP after 3D embedding -> ranking.

The domain side of ``shared.campaign``. graphgen's models are unconditional, so ``target`` does not steer
generation: it only names the values ``rank_by`` measures distances to (``guidance_scale`` must stay 1).

* ``filters``: ``valid`` (RDKit sanitises the uncorrected molecule), ``connected`` (one fragment), ``novel`` (not
  in the training SMILES; needs ``--data-dir``), ``unique`` (first of each canonical SMILES), ``max_atoms: N``
  (heavy atoms), ``elements: [C, N, O, F]``.
* ``verify``: ``xtb`` or ``b3lyp``: ``graphgen.dft``'s embedding + a quantum-chemistry backend, passed in by the
  CLI (graphgen's library never imports molgen; docs/architecture.md).
* ``rank_by``: ``xtb:gap`` / ``xtb:homo`` / ``xtb:lumo`` / ``xtb:mu`` (distance to ``target``) or ``xtb:energy``
  (lowest first); the same with ``b3lyp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.campaign import CampaignSpec, plot_funnel, plot_target_histograms, rank_label

__all__ = ["GraphgenCampaign"]

FILTERS = ("valid", "connected", "novel", "unique", "max_atoms", "elements")
VERIFIED_NAMES = {"gap": "gap_eV", "homo": "homo_eV", "lumo": "lumo_eV", "mu": "dipole_D", "energy": "energy_eV"}
UNITS = {"gap": "eV", "homo": "eV", "lumo": "eV", "mu": "D", "energy": "eV"}

_BUNDLES: dict[str, Any] = {}  # per process
_TRAIN_SMILES: dict[tuple, set] = {}


def _bundle(model: str):
    if model not in _BUNDLES:
        from graphgen.checkpoint import load_model
        from graphgen.pretrained import default_model_path

        _BUNDLES[model] = load_model(default_model_path() if model == "default" else model)
    return _BUNDLES[model]


@dataclass
class GraphgenCampaign:
    """``verifiers``: method name -> hook over SMILES (``graphgen.dft.GraphDFTHook`` with a backend)."""

    verifiers: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    name: str = "graphgen"

    def default_model_file(self):
        from graphgen.pretrained import default_model_path

        return default_model_path()

    def validate(self, spec: CampaignSpec) -> None:
        unknown = sorted(set(spec.filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; graphgen knows {', '.join(FILTERS)}")
        if "max_atoms" in spec.filters and (not isinstance(spec.filters["max_atoms"], int)
                                            or spec.filters["max_atoms"] < 1):
            raise ValueError(f"filters.max_atoms must be a positive integer, got {spec.filters['max_atoms']!r}")
        if "elements" in spec.filters:
            _element_set(spec.filters["elements"])
        if spec.guidance_scale != 1.0:
            raise ValueError("graphgen models are unconditional: guidance_scale must be 1")
        bad = sorted(set(spec.verify) - set(self.verifiers))
        if bad:
            raise ValueError(f"unknown verifier(s) {bad}; graphgen knows {', '.join(sorted(self.verifiers)) or 'none'}")
        unknown_targets = sorted(set(spec.target) - set(VERIFIED_NAMES))
        if unknown_targets:
            raise ValueError(f"unknown target(s) {unknown_targets}: graphgen ranks by {', '.join(VERIFIED_NAMES)}")
        bundle = _bundle(spec.model)
        if bundle.config.atom_types is None:
            raise ValueError(f"{spec.model}: a graph model (no atom types); campaigns need a molecule model")
        if spec.filters.get("novel"):
            self._training_smiles(bundle)  # fails here, before any work, when the data are missing
        if spec.rank_by is not None:
            method, sep, prop = spec.rank_by.partition(":")
            if not sep or method not in spec.verify or prop not in VERIFIED_NAMES:
                raise ValueError(f"rank_by {spec.rank_by!r}: expected METHOD:PROPERTY with METHOD in verify "
                                 f"{spec.verify} and PROPERTY one of {', '.join(VERIFIED_NAMES)}")
            if prop != "energy" and prop not in spec.target:
                raise ValueError(f"rank_by {spec.rank_by!r} measures the distance to target.{prop}: set it")

    def _training_smiles(self, bundle) -> set:
        key = (bundle.config.data.name, self.data_dir)
        if key not in _TRAIN_SMILES:
            from graphgen.train import load_test_data

            try:
                _, train = load_test_data(bundle.config.data, self.data_dir)
            except FileNotFoundError as err:
                raise ValueError(f"filters.novel needs the training set of {bundle.config.data.name}: {err}") from None
            _TRAIN_SMILES[key] = set(train)
        return _TRAIN_SMILES[key]

    def generate_shard(self, spec: CampaignSpec, index: int, seed: int, n: int) -> list[dict]:
        from rdkit import Chem, RDLogger

        from graphgen.metrics import canonical_smiles
        from graphgen.io import mol_smiles
        from graphgen.sampling import sample_graphs

        bundle = _bundle(spec.model)
        out = sample_graphs(bundle, n, steps=spec.steps, seed=seed, batch_size=n)
        allowed = _element_set(spec.filters["elements"]) if "elements" in spec.filters else None
        train = self._training_smiles(bundle) if spec.filters.get("novel") else None
        RDLogger.DisableLog("rdApp.*")
        try:
            candidates = []
            for mol in out.items:
                raw = mol_smiles(mol)
                smiles = canonical_smiles(raw) if raw else None
                parsed = Chem.MolFromSmiles(smiles) if smiles else None
                filters = {}
                if spec.filters.get("valid"):
                    filters["valid"] = parsed is not None
                if spec.filters.get("connected"):
                    filters["connected"] = parsed is not None and len(Chem.GetMolFrags(parsed)) == 1
                if "max_atoms" in spec.filters:
                    filters["max_atoms"] = mol.GetNumAtoms() <= spec.filters["max_atoms"]
                if allowed is not None:
                    filters["elements"] = {a.GetSymbol() for a in mol.GetAtoms()} <= allowed
                if train is not None:
                    filters["novel"] = smiles is not None and smiles not in train
                candidates.append({"record": raw, "key": smiles, "filters": filters,
                                   "values": {"smiles": smiles or raw, "heavy_atoms": mol.GetNumAtoms()}})
        finally:
            RDLogger.EnableLog("rdApp.*")
        return candidates

    def verification(self, spec: CampaignSpec, method: str):
        return self.verifiers[method], lambda cand: cand["values"]["smiles"]

    def rank_value(self, spec: CampaignSpec, candidate: dict) -> float | None:
        if spec.rank_by is None:
            return None
        method, _, prop = spec.rank_by.partition(":")
        result = candidate["verified"].get(method)
        if result is None or result["status"] != "ok":
            return None
        value = result["values"].get(VERIFIED_NAMES[prop])
        if value is None:
            return None
        return float(value) if prop == "energy" else abs(float(value) - float(spec.target[prop]))

    def write_outputs(self, spec: CampaignSpec, candidates: list[dict], top: list[dict], out_dir: Path) -> list:
        from graphgen.dft import molblock
        from shared.io import atomic_write_text

        atomic_write_text(out_dir / "top_k.smi", "".join(f"{c['values']['smiles']} {c['id']}\n" for c in top))
        blocks = []
        for cand in top:
            for method, result in cand["verified"].items():
                if result["status"] == "ok" and "positions_A" in result["values"]:
                    fields = {"id": cand["id"], "rank": cand["rank"], "smiles": cand["values"]["smiles"],
                              **{f"{method}_{k}": v for k, v in result["values"].items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)}}
                    props = "".join(f">  <{k}>\n{v}\n\n" for k, v in fields.items())
                    blocks.append(molblock(result["values"]) + props + "$$$$\n")
                    break
        atomic_write_text(out_dir / "top_k.sdf", "".join(blocks))
        figures = [plot_funnel(spec, candidates, out_dir / "funnel.png")]
        achieved, judges = {}, {}
        for prop in spec.target:
            for method in spec.verify[:1]:  # the first verifier judges the figure
                values = [c["verified"][method]["values"].get(VERIFIED_NAMES[prop]) for c in candidates
                          if c["verified"].get(method, {}).get("status") == "ok"]
                achieved[prop], judges[prop] = [float(v) for v in values if v is not None], method
        figures += plot_target_histograms(spec, achieved, UNITS, out_dir, judges)
        if top:
            figures.append(_grid_image(top, out_dir / "top_k.png", rank_label(spec, UNITS)))
        return figures


def _element_set(symbols) -> set[str]:
    from rdkit import Chem

    if not isinstance(symbols, list) or not symbols:
        raise ValueError(f"filters.elements must be a list of element symbols, got {symbols!r}")
    table = Chem.GetPeriodicTable()
    for symbol in symbols:
        try:
            table.GetAtomicNumber(str(symbol))
        except RuntimeError:
            raise ValueError(f"filters.elements: {symbol!r} is not an element symbol") from None
    return {str(s) for s in symbols}


def _grid_image(top: list[dict], path: Path, label: str = "") -> Path:
    from rdkit import Chem
    from rdkit.Chem import Draw

    from shared.io import atomic_write_bytes

    mols, legends = [], []
    for cand in top:
        mol = Chem.MolFromSmiles(cand["values"]["smiles"])
        if mol is not None:
            mols.append(mol)
            legends.append(f"#{cand['rank']}  {label} {cand.get('rank_value', 0):.3g}")
    image = Draw.MolsToGridImage(mols, molsPerRow=min(5, max(len(mols), 1)), subImgSize=(220, 180),
                                 legends=legends, returnPNG=True)
    return atomic_write_bytes(path, image if isinstance(image, bytes) else image.data)
