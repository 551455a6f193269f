"""Molecule metrics of the GDSS protocol: validity without correction, valency correction, validity,
uniqueness, novelty.

GDSS (``sampler.py`` / ``utils/mol_utils.py``) evaluates generated tensors like this:

1. ``construct_mol`` builds an RDKit molecule (with the +1 charge fix for N, O, S; see
   ``graphgen.representation.construct_mol``).
2. *Validity without correction* = the molecule passes RDKit's valence check (``SANITIZE_PROPERTIES``)
   before ``correct_mol`` runs. Fragments are allowed: a disconnected molecule counts as valid if every atom's
   valence is allowed (connectedness is not required), and an empty molecule passes trivially.
3. ``correct_mol`` lowers, one step at a time, the highest-order bond of the first over-valent atom until no
   valence problem is left.
4. The largest fragment is kept: the corrected SMILES is split at '.', and the longest SMILES *string* is
   parsed again (``valid_mol_can_with_seg``).
5. Validity, uniqueness and novelty follow MOSES (which GDSS calls): validity = fraction of generated samples
   giving a non-empty valid molecule after correction; uniqueness = distinct canonical SMILES / valid ones;
   novelty = distinct valid canonical SMILES not in the (canonicalised) training set / distinct valid ones.

GDSS divides the "w/o correction" count by the number of molecules surviving steps 3-4 (in practice all
samples); :func:`gdss_molecule_metrics` reports both that ratio and the plain fraction of samples.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from graphgen.representation import BOND_TYPES, decode_molecules, valence_problem

__all__ = [
    "molecule_graphs",
    "canonical_smiles",
    "is_valence_valid",
    "correct_mol",
    "largest_fragment",
    "validity_without_correction",
    "validity",
    "uniqueness",
    "novelty",
    "evaluate_molecules",
    "gdss_molecule_metrics",
    "molecule_statistics",
]


def canonical_smiles(item: str | Chem.Mol | None) -> str | None:
    """RDKit canonical (isomeric) SMILES of a SMILES string or molecule; ``None`` if invalid or empty."""
    if item is None:
        return None
    with BlockLogs():
        mol = Chem.MolFromSmiles(item) if isinstance(item, str) else _sanitized_copy(item)
        if mol is None or mol.GetNumAtoms() == 0:
            return None
        return Chem.MolToSmiles(mol)


def _sanitized_copy(mol: Chem.Mol) -> Chem.Mol | None:
    copy = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(copy)
    except Exception:  # RDKit raises several exception types for unsanitisable molecules
        return None
    return copy


def is_valence_valid(mol: Chem.Mol) -> bool:
    """GDSS ``check_valency``: every atom passes RDKit's valence check (fragments allowed)."""
    return valence_problem(mol) is None


def correct_mol(mol: Chem.Mol) -> tuple[Chem.RWMol, bool]:
    """GDSS valency correction. Returns ``(corrected copy, was_valid_before_correction)``.

    While some atom is over-valent, take the first such atom, pick its highest-order bond (first in RDKit's
    bond order on ties) and lower that bond's order by one (a single bond is removed).
    """
    mol = Chem.RWMol(mol)
    was_valid = is_valence_valid(mol)
    # every step lowers the total bond order by one, so this bounds the loop
    for _ in range(3 * mol.GetNumBonds() + 1):
        problem = valence_problem(mol)
        if problem is None:
            break
        bonds = [
            (int(b.GetBondType()), b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            for b in mol.GetAtomWithIdx(problem[0]).GetBonds()
        ]
        if not bonds:  # over-valent without bonds: nothing a bond edit can fix
            break
        bonds.sort(key=lambda bond: bond[0], reverse=True)  # stable: ties keep RDKit's order, as GDSS
        order, start, end = bonds[0]
        mol.RemoveBond(start, end)
        if order - 1 >= 1:
            mol.AddBond(start, end, BOND_TYPES[order - 1])
    return mol, was_valid


def largest_fragment(mol: Chem.Mol | None) -> Chem.Mol | None:
    """GDSS ``valid_mol_can_with_seg``: parse the longest '.'-separated part of the SMILES (None if invalid)."""
    if mol is None:
        return None
    with BlockLogs():
        mol = Chem.Mol(mol)
        mol.UpdatePropertyCache(strict=False)
        smiles = Chem.MolToSmiles(mol, isomericSmiles=True)
        if "." in smiles:
            smiles = max(smiles.split("."), key=len)  # max keeps the first of equally long parts, like GDSS
        return Chem.MolFromSmiles(smiles)


def validity_without_correction(mols: Sequence[Chem.Mol]) -> float:
    """Fraction of (uncorrected) molecules passing the valence check."""
    if len(mols) == 0:
        raise ValueError("validity_without_correction needs at least one molecule")
    return sum(is_valence_valid(m) for m in mols) / len(mols)


def validity(items: Sequence[str | Chem.Mol | None]) -> float:
    """Fraction of items (SMILES or molecules) that are non-empty valid molecules (MOSES ``valid``)."""
    if len(items) == 0:
        raise ValueError("validity needs at least one item")
    return sum(canonical_smiles(i) is not None for i in items) / len(items)


def uniqueness(items: Iterable[str | Chem.Mol | None]) -> float:
    """Distinct canonical SMILES among the valid items / number of valid items (MOSES ``unique@k``)."""
    valid = [s for s in map(canonical_smiles, items) if s is not None]
    if not valid:
        raise ValueError("uniqueness needs at least one valid molecule")
    return len(set(valid)) / len(valid)


def novelty(
    items: Iterable[str | Chem.Mol | None], train_smiles: Iterable[str], canonicalize_train: bool = True
) -> float:
    """Distinct valid canonical SMILES not in the training set / distinct valid ones (MOSES ``novelty``).

    Training SMILES are canonicalised too unless ``canonicalize_train=False`` says they already are
    (e.g. the ``smiles`` of a cached ``MoleculeData``; saves ~10 s per 100k molecules).
    """
    generated = {s for s in map(canonical_smiles, items) if s is not None}
    if not generated:
        raise ValueError("novelty needs at least one valid molecule")
    train_iter = map(canonical_smiles, train_smiles) if canonicalize_train else train_smiles
    train = {s for s in train_iter if s is not None}
    return len(generated - train) / len(generated)


def molecule_statistics(items: Iterable[str | Chem.Mol | None]) -> dict:
    """Of the valid items: the fraction with more than one fragment (disconnected graphs), the mean heavy-atom
    count, and the fraction of each element among all heavy atoms."""
    mols = [m for m in (Chem.MolFromSmiles(s) for s in map(canonical_smiles, items) if s is not None)
            if m is not None]
    if not mols:
        raise ValueError("molecule_statistics needs at least one valid molecule")
    elements: dict[str, int] = {}
    for mol in mols:
        for atom in mol.GetAtoms():
            elements[atom.GetSymbol()] = elements.get(atom.GetSymbol(), 0) + 1
    total = sum(elements.values())
    return {
        "multi_fragment_fraction": sum(len(Chem.GetMolFrags(m)) > 1 for m in mols) / len(mols),
        "mean_heavy_atoms": total / len(mols),
        "atom_fractions": {k: v / total for k, v in sorted(elements.items(), key=lambda kv: -kv[1])},
    }


def gdss_molecule_metrics(
    x: torch.Tensor,
    adj: torch.Tensor,
    atom_types: Sequence[str],
    train_smiles: Iterable[str] | None = None,
    canonicalize_train: bool = True,
) -> dict:
    """The GDSS molecule evaluation of generated ``x (B, N, T)`` / ``adj (B, N, N)`` tensors.

    Returns ``validity_wo_correction`` (GDSS's ratio: valid-before-correction / molecules surviving
    correction), ``validity_wo_correction_of_samples`` (same count / B), ``validity``, ``uniqueness``,
    ``multi_fragment_fraction`` (corrected molecules with more than one fragment / B),
    ``novelty`` (only with ``train_smiles``), ``num_samples``, ``num_mols`` and the generated ``smiles``
    (non-empty SMILES of the corrected largest fragments, the list GDSS passes to MOSES and FCD).
    """
    raw = decode_molecules(x, adj, atom_types)
    mols, num_valid_before, multi_fragment = [], 0, 0
    for mol in raw:
        corrected, was_valid = correct_mol(mol)
        num_valid_before += was_valid
        multi_fragment += len(Chem.GetMolFrags(corrected)) > 1
        fragment = largest_fragment(corrected)
        if fragment is not None:
            mols.append(fragment)
    smiles = [s for s in (Chem.MolToSmiles(m) for m in mols) if s]
    result = {
        "num_samples": len(raw),
        "num_mols": len(mols),
        "validity_wo_correction": num_valid_before / len(mols) if mols else 0.0,
        "validity_wo_correction_of_samples": num_valid_before / len(raw),
        "validity": len(smiles) / len(raw),
        "uniqueness": uniqueness(smiles) if smiles else 0.0,
        # disconnected graphs, before GDSS keeps only each one's largest fragment (fraction of all samples)
        "multi_fragment_fraction": multi_fragment / len(raw),
        "smiles": smiles,
    }
    if train_smiles is not None:
        result["novelty"] = novelty(smiles, train_smiles, canonicalize_train) if smiles else 0.0
    return result


def molecule_graphs(mols: Iterable[Chem.Mol]) -> list:
    """networkx graphs of molecules as NSPDK compares them (GDSS): nodes labelled by element symbol, edges by bond
    order (1, 2, 3; kekulize aromatic molecules first, as GDSS does)."""
    import networkx as nx

    graphs = []
    for mol in mols:
        graph = nx.Graph()
        for atom in mol.GetAtoms():
            graph.add_node(atom.GetIdx(), label=atom.GetSymbol())
        for bond in mol.GetBonds():
            graph.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), label=int(bond.GetBondTypeAsDouble()))
        graphs.append(graph)
    return graphs


def evaluate_molecules(*args, **kwargs) -> dict:
    """Deprecated name of :func:`gdss_molecule_metrics` (molgen's ``evaluate_molecules`` takes a batch and a
    context; graphgen's tensor function now has its own name). Kept for one release."""
    import warnings

    warnings.warn("graphgen.metrics.evaluate_molecules is renamed gdss_molecule_metrics", DeprecationWarning,
                  stacklevel=2)
    return gdss_molecule_metrics(*args, **kwargs)
