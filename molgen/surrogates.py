"""Property surrogates for screening conditional samples: gradient-boosted trees on graph features.

A surrogate predicts a QM9 property from the molecular graph (element and hydrogen counts, bond orders, rings,
Morgan count fingerprint radius 2 folded to 1,024 bits) plus one physics estimate that needs the geometry: the
dipole of Gasteiger partial charges (computed from the graph) at the molecule's own coordinates, and the charges'
total magnitude. Without that estimate no graph feature knows a conformer's dipole (the mu surrogate's test MAE
falls from 0.62 to 0.40 D with it: benchmarks/results/molgen_surrogates.md). It is independent of the shipped 3D
regressors in model family, input and training data: it is fitted on QM9's ``train_generator`` half (the
generator's data), the regressors that judge conditional generation on ``train_regressor``. Fitting uses
scikit-learn's HistGradientBoostingRegressor; the trees are then exported to plain arrays (``.npz``, no pickle)
and evaluated in numpy, so loading a shipped surrogate runs no code and needs no scikit-learn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FEATURE_VERSION", "TreeEnsemble", "dataset_features", "fit_surrogate", "load_surrogates",
           "molecule_features", "save_surrogates", "train_surrogates"]

FEATURE_VERSION = 2  # 2: + Gasteiger-charge dipole (D) and total |charge| at the molecule's coordinates
FINGERPRINT_BITS = 1024
_ELEMENT_SLOTS = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}  # H C N O F, then "other" (5) and attached hydrogens (6)
_BOND_SLOTS = {1.0: 0, 2.0: 1, 3.0: 2, 1.5: 3}


def molecule_features(mols: Sequence) -> np.ndarray:
    """(n, 1038) float32 features of RDKit molecules (sanitised or not; ``None`` gives a row of zeros); the last two
    (charge dipole, total |charge|) are 0 for a molecule without a conformer."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FINGERPRINT_BITS)
    out = np.zeros((len(mols), 7 + 4 + 1 + FINGERPRINT_BITS + 2), dtype=np.float32)
    for i, mol in enumerate(mols):
        if mol is None:
            continue
        mol = Chem.Mol(mol)
        try:
            mol.UpdatePropertyCache(strict=False)
            Chem.FastFindRings(mol)
            fingerprint = generator.GetCountFingerprintAsNumPy(mol)
        except Exception:  # a graph RDKit cannot even type (generated output): counts only
            fingerprint = np.zeros(FINGERPRINT_BITS)
        row = out[i]
        for atom in mol.GetAtoms():
            row[_ELEMENT_SLOTS.get(atom.GetAtomicNum(), 5)] += 1
            row[6] += atom.GetNumExplicitHs() + atom.GetNumImplicitHs() if atom.GetAtomicNum() != 1 else 0
        for bond in mol.GetBonds():
            row[7 + _BOND_SLOTS.get(bond.GetBondTypeAsDouble(), 0)] += 1
        row[11] = mol.GetRingInfo().NumRings()
        row[12:12 + FINGERPRINT_BITS] = fingerprint
        row[-2:] = _charge_dipole(mol)
    return out


_DEBYE_PER_E_ANGSTROM = 4.80320


def _charge_dipole(mol) -> tuple[float, float]:
    """|sum_i q_i r_i| in debye (about the centroid: the molecules are neutral, or nearly) and sum_i |q_i| of the
    Gasteiger charges at ``mol``'s coordinates; zeros where there is no conformer or the charges fail."""
    from rdkit import Chem
    from rdkit.Chem import rdPartialCharges

    if mol.GetNumConformers() == 0 or mol.GetNumAtoms() == 0:
        return 0.0, 0.0
    # Gasteiger typing needs hybridisation: on an unsanitised graph (raw generated output) every charge is NaN.
    # Sanitise a copy; where full sanitisation fails, keep the steps that succeed (catchErrors)
    typed = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(typed, catchErrors=True)
        rdPartialCharges.ComputeGasteigerCharges(typed)
        charges = np.array([a.GetDoubleProp("_GasteigerCharge") for a in typed.GetAtoms()])
    except Exception:  # an untypeable generated graph
        return 0.0, 0.0
    if not np.isfinite(charges).all():
        return 0.0, 0.0
    positions = mol.GetConformer().GetPositions()
    if not np.isfinite(positions).all():
        return 0.0, 0.0
    moment = (charges[:, None] * (positions - positions.mean(0))).sum(0)
    return float(np.linalg.norm(moment) * _DEBYE_PER_E_ANGSTROM), float(np.abs(charges).sum())


@dataclass
class TreeEnsemble:
    """A regression forest as arrays: per node ``feature``, ``threshold`` (go left if x <= threshold; NaN goes
    where ``missing_left`` says), ``left``/``right`` (absolute node indices), ``value`` (leaf contribution, the
    learning rate included) and ``is_leaf``; ``roots`` index each tree's first node."""

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    is_leaf: np.ndarray
    roots: np.ndarray
    baseline: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        rows = np.arange(x.shape[0])[:, None]
        while True:
            active = ~self.is_leaf[node]
            if not active.any():
                break
            values = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]), node)
        return self.baseline + self.value[node].sum(1)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + k: np.asarray(getattr(self, k)) for k in
                ("feature", "threshold", "missing_left", "left", "right", "value", "is_leaf", "roots", "baseline")}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> "TreeEnsemble":
        get = {k: np.asarray(arrays[prefix + k]) for k in
               ("feature", "threshold", "missing_left", "left", "right", "value", "is_leaf", "roots", "baseline")}
        get["baseline"] = float(get["baseline"])
        return cls(**get)

    @classmethod
    def from_sklearn(cls, model) -> "TreeEnsemble":
        """Export a fitted ``HistGradientBoostingRegressor`` (numerical features, squared error)."""
        parts, roots, offset = [], [], 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            parts.append((nodes, offset))
            roots.append(offset)
            offset += len(nodes)
        cat = np.concatenate([n for n, _ in parts])
        shift = np.concatenate([np.full(len(n), o) for n, o in parts])
        return cls(feature=cat["feature_idx"].astype(np.int32), threshold=cat["num_threshold"].astype(np.float64),
                   missing_left=cat["missing_go_to_left"].astype(bool),
                   left=(cat["left"] + shift).astype(np.int32), right=(cat["right"] + shift).astype(np.int32),
                   value=cat["value"].astype(np.float64), is_leaf=cat["is_leaf"].astype(bool),
                   roots=np.asarray(roots, dtype=np.int32), baseline=float(np.ravel(model._baseline_prediction)[0]))


def fit_surrogate(features: np.ndarray, values: np.ndarray, *, max_iter: int = 300, max_leaf_nodes: int = 31,
                  learning_rate: float = 0.1, seed: int = 0) -> TreeEnsemble:
    """Gradient-boosted trees (scikit-learn, squared error) fitted on ``features`` -> ``values``, exported."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                                          learning_rate=learning_rate, early_stopping=False, random_state=seed)
    model.fit(features, values)
    return TreeEnsemble.from_sklearn(model)


def save_surrogates(path: str | os.PathLike, surrogates: dict[str, TreeEnsemble], **metadata) -> Path:
    """All surrogates in one ``.npz`` (written atomically), with the feature version and string metadata."""
    import io
    import json

    from shared.io import atomic_write_bytes

    arrays = {"feature_version": np.asarray(FEATURE_VERSION), "properties": np.asarray(sorted(surrogates)),
              "metadata": np.asarray(json.dumps(metadata, sort_keys=True))}
    for name, model in surrogates.items():
        arrays.update(model.arrays(prefix=f"{name}/"))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_surrogates(path: str | os.PathLike | None = None) -> tuple[dict[str, TreeEnsemble], dict]:
    """``({property: TreeEnsemble}, metadata)`` from a file (default: the shipped ``molgen/pretrained``)."""
    import json

    path = Path(path) if path is not None else Path(__file__).parent / "pretrained" / "surrogates.npz"
    if not path.is_file():
        raise FileNotFoundError(f"surrogate file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if int(data["feature_version"]) != FEATURE_VERSION:
            raise ValueError(f"{path}: surrogates of feature version {int(data['feature_version'])}, this molgen "
                             f"computes version {FEATURE_VERSION}")
        names = [str(n) for n in data["properties"]]
        return ({n: TreeEnsemble.from_arrays(data, prefix=f"{n}/") for n in names},
                json.loads(str(data["metadata"])))


def dataset_features(dataset) -> np.ndarray:
    """Features of every molecule of a ``molgen.data.QM9Dataset`` split."""
    return molecule_features([dataset.to_mol(i) for i in range(len(dataset))])


def train_surrogates(qm9: str | os.PathLike, properties: Sequence[str], *, split: str = "train_generator",
                     max_iter: int = 300, max_leaf_nodes: int = 31, seed: int = 0,
                     progress: bool = False) -> tuple[dict[str, TreeEnsemble], dict]:
    """One surrogate per property, fitted on ``split``; returns them and their MAE on the valid and test splits
    (QM9 units)."""
    from molgen.data import QM9Dataset

    train, valid, test = (QM9Dataset(qm9, s) for s in (split, "valid", "test"))
    x_train, x_valid, x_test = (dataset_features(d) for d in (train, valid, test))
    models, scores = {}, {}
    for prop in properties:
        models[prop] = fit_surrogate(x_train, train.property(prop).numpy(), max_iter=max_iter,
                                     max_leaf_nodes=max_leaf_nodes, seed=seed)
        scores[prop] = {f"{name}_mae": float(np.abs(models[prop].predict(x) - d.property(prop).numpy()).mean())
                        for name, x, d in (("valid", x_valid, valid), ("test", x_test, test))}
        if progress:
            print(f"surrogate {prop}: {scores[prop]}", flush=True)
    return models, scores
