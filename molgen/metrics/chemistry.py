"""Chemistry metrics: RDKit validity, connectivity, uniqueness, novelty, closed shells and formal charges.

Definitions (over all generated molecules unless said otherwise):

* ``validity``: RDKit sanitisation (valences, Kekulisation of aromatic rings) succeeds for the whole molecule;
* ``validity_connected``: valid and a single fragment; ``largest_fragment_fraction``: mean share of atoms in the
  largest fragment;
* ``uniqueness``: distinct canonical SMILES (stereo-free, of the largest fragment) / number of valid molecules;
* ``novelty``: distinct valid SMILES not among the training SMILES / distinct valid SMILES. Training SMILES
  must be canonical in the same way (``molgen.data.canonical_smiles``; ``QM9Dataset.smiles()`` already is);
* ``closed_shell``: valid, an even number of electrons (sum of Z minus the net formal charge) and no radical
  electrons (RDKit ``AssignRadicals`` after sanitisation);
* ``net_charge_abs_mean`` / ``neutral_fraction``: the sum of formal charges per molecule (tensor-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from molgen.representation import MolBatch

__all__ = ["MoleculeCheck", "check_molecule", "rdkit_metrics", "novelty", "charge_metrics"]


@dataclass
class MoleculeCheck:
    valid: bool
    connected: bool
    largest_fragment_fraction: float
    smiles: str | None  # canonical, stereo-free SMILES of the largest fragment (valid molecules only)
    even_electrons: bool
    radical_electrons: int | None  # None when sanitisation failed

    @property
    def closed_shell(self) -> bool:
        return self.valid and self.even_electrons and self.radical_electrons == 0


def check_molecule(mol) -> MoleculeCheck:
    """Sanitise a copy of ``mol`` (explicit hydrogens expected) and collect the per-molecule facts."""
    from rdkit import Chem

    copy = Chem.Mol(mol)
    n_atoms = copy.GetNumAtoms()
    electrons = sum(a.GetAtomicNum() for a in copy.GetAtoms()) - sum(a.GetFormalCharge() for a in copy.GetAtoms())
    fragments = Chem.GetMolFrags(copy, asMols=False, sanitizeFrags=False) if n_atoms else ()
    largest = max((len(f) for f in fragments), default=0)
    fraction = largest / n_atoms if n_atoms else 0.0
    try:
        Chem.SanitizeMol(copy)
    except Exception:  # noqa: BLE001 - RDKit raises several sanitisation error types; all mean "invalid"
        return MoleculeCheck(False, len(fragments) == 1, fraction, None, electrons % 2 == 0, None)
    Chem.AssignRadicals(copy)
    radicals = sum(a.GetNumRadicalElectrons() for a in copy.GetAtoms())
    main = max(Chem.GetMolFrags(copy, asMols=True, sanitizeFrags=False), key=lambda m: m.GetNumAtoms())
    Chem.RemoveStereochemistry(main)
    smiles = Chem.MolToSmiles(Chem.RemoveHs(main, sanitize=False), isomericSmiles=False)
    return MoleculeCheck(True, len(fragments) == 1, fraction, smiles, electrons % 2 == 0, radicals)


def rdkit_metrics(mols: Sequence) -> tuple[dict[str, float], list[MoleculeCheck]]:
    """Validity, connectivity, uniqueness and closed-shell ratio; also returns the per-molecule checks."""
    if len(mols) == 0:
        raise ValueError("rdkit_metrics: no molecules")
    checks = [check_molecule(m) for m in mols]
    n = len(checks)
    valid = [c for c in checks if c.valid]
    unique = {c.smiles for c in valid}
    metrics = {
        "validity": len(valid) / n,
        "validity_connected": sum(c.connected for c in valid) / n,
        "largest_fragment_fraction": sum(c.largest_fragment_fraction for c in checks) / n,
        "uniqueness": len(unique) / len(valid) if valid else 0.0,
        "closed_shell": sum(c.closed_shell for c in checks) / n,
    }
    return metrics, checks


def novelty(generated_smiles: Iterable[str | None], train_smiles: Iterable[str]) -> float:
    """Share of distinct valid generated SMILES that are not training SMILES (0 when none is valid)."""
    distinct = {s for s in generated_smiles if s is not None}
    if not distinct:
        return 0.0
    train = set(train_smiles)
    return len(distinct - train) / len(distinct)


def charge_metrics(batch: MolBatch) -> dict[str, float]:
    """Net formal charge per molecule (mean |sum|, neutral share) and the share with an even electron count."""
    if len(batch) == 0:
        raise ValueError("charge_metrics: empty batch")
    mask = batch.mask.long()
    net = (batch.charges.long() * mask).sum(-1)
    electrons = (batch.numbers.long() * mask).sum(-1) - net
    return {
        "net_charge_abs_mean": float(net.abs().double().mean()),
        "neutral_fraction": float((net == 0).double().mean()),
        "even_electron_fraction": float((electrons % 2 == 0).double().mean()),
    }
