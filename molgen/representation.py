"""Molecules as tensors: atoms, formal charges, positions and categorical bonds; conversion to and from RDKit.

Two layouts:

* ``MolTensors``: one molecule, ``n`` atoms, bonds as an edge list ``bond_index`` (2, E) with ``i < j``.
* ``MolBatch``: ``B`` molecules padded to ``N`` atoms, bonds as a dense symmetric category matrix (B, N, N);
  ``mask`` marks real atoms and ``numbers`` is 0 on padding. This is what a generator outputs and what the
  vectorised metrics in ``molgen.metrics`` consume.

Bond categories: 0 none, 1 single, 2 double, 3 triple, 4 aromatic (bond order 1.5). All hydrogens are explicit.
RDKit is imported lazily, so the tensor side works without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "ATOM_TYPES",
    "ATOMIC_NUMBERS",
    "BOND_NONE",
    "BOND_SINGLE",
    "BOND_DOUBLE",
    "BOND_TRIPLE",
    "BOND_AROMATIC",
    "BOND_ORDERS",
    "MolTensors",
    "MolBatch",
    "atom_type_index",
    "mol_to_tensors",
    "tensors_to_mol",
]

ATOM_TYPES: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS: tuple[int, ...] = (1, 6, 7, 8, 9)
BOND_NONE, BOND_SINGLE, BOND_DOUBLE, BOND_TRIPLE, BOND_AROMATIC = range(5)
# bond order of each category; aromatic counts 1.5 (never cast to 1)
BOND_ORDERS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 1.5)


def atom_type_index(numbers: Tensor, vocabulary: Sequence[int] = ATOMIC_NUMBERS) -> Tensor:
    """Index of each atomic number in ``vocabulary`` (e.g. H C N O F -> 0..4); ValueError for other elements."""
    vocab = torch.as_tensor(list(vocabulary), device=numbers.device, dtype=torch.long)
    match = numbers.long().unsqueeze(-1) == vocab
    if not bool(match.any(-1).all()):
        unknown = sorted(set(numbers[~match.any(-1)].tolist()))
        raise ValueError(f"atomic numbers {unknown} are not in the vocabulary {list(vocabulary)}")
    return match.long().argmax(-1)


@dataclass
class MolTensors:
    """One molecule: ``numbers`` (n,), ``charges`` (n,), ``positions`` (n, 3) in Angstrom,
    ``bond_index`` (2, E) with i < j and ``bond_types`` (E,) categories 1..4."""

    numbers: Tensor
    charges: Tensor
    positions: Tensor
    bond_index: Tensor
    bond_types: Tensor

    def __post_init__(self) -> None:
        n = self.numbers.shape[0]
        if self.charges.shape != (n,) or self.positions.shape != (n, 3):
            raise ValueError(
                f"MolTensors: numbers {tuple(self.numbers.shape)}, charges {tuple(self.charges.shape)} and "
                f"positions {tuple(self.positions.shape)} disagree (expected (n,), (n,), (n, 3))"
            )
        if self.bond_index.dim() != 2 or self.bond_index.shape[0] != 2:
            raise ValueError(f"MolTensors: bond_index must have shape (2, E), got {tuple(self.bond_index.shape)}")
        if self.bond_types.shape != (self.bond_index.shape[1],):
            raise ValueError("MolTensors: bond_types must have one entry per column of bond_index")

    @property
    def num_atoms(self) -> int:
        return int(self.numbers.shape[0])

    def atom_types(self, vocabulary: Sequence[int] = ATOMIC_NUMBERS) -> Tensor:
        return atom_type_index(self.numbers, vocabulary)

    def bond_matrix(self) -> Tensor:
        """Dense symmetric (n, n) bond-category matrix."""
        n = self.num_atoms
        matrix = torch.zeros(n, n, dtype=torch.long, device=self.numbers.device)
        i, j = self.bond_index.long()
        matrix[i, j] = self.bond_types.long()
        matrix[j, i] = self.bond_types.long()
        return matrix


@dataclass
class MolBatch:
    """``B`` molecules padded to ``N`` atoms (see module docstring)."""

    numbers: Tensor  # (B, N) long, 0 on padding
    charges: Tensor  # (B, N) long
    positions: Tensor  # (B, N, 3) Angstrom
    bonds: Tensor  # (B, N, N) long categories, symmetric, zero diagonal
    mask: Tensor  # (B, N) bool

    def __post_init__(self) -> None:
        b, n = self.numbers.shape
        expected = {"charges": (b, n), "positions": (b, n, 3), "bonds": (b, n, n), "mask": (b, n)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"MolBatch.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")

    def __len__(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def num_atoms(self) -> Tensor:
        return self.mask.sum(-1)

    @classmethod
    def from_tensors(cls, molecules: Sequence[MolTensors], max_atoms: int | None = None) -> "MolBatch":
        if len(molecules) == 0:
            raise ValueError("MolBatch.from_tensors needs at least one molecule")
        n = max(m.num_atoms for m in molecules) if max_atoms is None else max_atoms
        if any(m.num_atoms > n for m in molecules):
            raise ValueError(f"a molecule has more than max_atoms={n} atoms")
        device = molecules[0].positions.device
        b = len(molecules)
        numbers = torch.zeros(b, n, dtype=torch.long, device=device)
        charges = torch.zeros(b, n, dtype=torch.long, device=device)
        positions = torch.zeros(b, n, 3, dtype=molecules[0].positions.dtype, device=device)
        bonds = torch.zeros(b, n, n, dtype=torch.long, device=device)
        mask = torch.zeros(b, n, dtype=torch.bool, device=device)
        for k, mol in enumerate(molecules):
            a = mol.num_atoms
            numbers[k, :a] = mol.numbers.long()
            charges[k, :a] = mol.charges.long()
            positions[k, :a] = mol.positions
            bonds[k, :a, :a] = mol.bond_matrix()
            mask[k, :a] = True
        return cls(numbers, charges, positions, bonds, mask)

    def unbatch(self) -> list[MolTensors]:
        out = []
        for k in range(len(self)):
            keep = self.mask[k]
            bonds = self.bonds[k][keep][:, keep]
            i, j = torch.triu_indices(bonds.shape[0], bonds.shape[0], offset=1, device=bonds.device)
            present = bonds[i, j] > 0
            out.append(
                MolTensors(
                    numbers=self.numbers[k][keep],
                    charges=self.charges[k][keep],
                    positions=self.positions[k][keep],
                    bond_index=torch.stack([i[present], j[present]]),
                    bond_types=bonds[i, j][present],
                )
            )
        return out

    def to_mols(self, sanitize: bool = False) -> list:
        """RDKit Mols (unsanitised by default, so that metrics can judge them)."""
        return [tensors_to_mol(m, sanitize=sanitize) for m in self.unbatch()]

    @classmethod
    def from_mols(cls, mols: Sequence, max_atoms: int | None = None) -> "MolBatch":
        return cls.from_tensors([mol_to_tensors(m) for m in mols], max_atoms=max_atoms)


def _rdkit_bond_types():
    from rdkit import Chem

    bt = Chem.BondType
    return {bt.SINGLE: BOND_SINGLE, bt.DOUBLE: BOND_DOUBLE, bt.TRIPLE: BOND_TRIPLE, bt.AROMATIC: BOND_AROMATIC}


def mol_to_tensors(mol, conf_id: int = -1, dtype: torch.dtype = torch.float32) -> MolTensors:
    """RDKit Mol with explicit hydrogens and a 3D conformer -> MolTensors."""
    if mol.GetNumConformers() == 0:
        raise ValueError("mol_to_tensors: the molecule has no conformer (3D positions are required)")
    if any(atom.GetTotalNumHs(includeNeighbors=False) for atom in mol.GetAtoms()):
        raise ValueError("mol_to_tensors: implicit hydrogens present; call Chem.AddHs(mol, addCoords=True) first")
    kinds = _rdkit_bond_types()
    numbers = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    charges = torch.tensor([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=torch.long)
    positions = torch.as_tensor(mol.GetConformer(conf_id).GetPositions(), dtype=dtype)
    pairs, types = [], []
    for bond in mol.GetBonds():
        if bond.GetBondType() not in kinds:
            raise ValueError(f"mol_to_tensors: unsupported bond type {bond.GetBondType()} at bond {bond.GetIdx()}")
        i, j = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        pairs.append((i, j))
        types.append(kinds[bond.GetBondType()])
    bond_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T.contiguous()
    return MolTensors(numbers, charges, positions, bond_index, torch.tensor(types, dtype=torch.long))


def tensors_to_mol(mol: MolTensors, sanitize: bool = True):
    """MolTensors -> RDKit Mol with one conformer; hydrogens stay explicit (no implicit H is ever added).

    ``sanitize=True`` raises RDKit's sanitisation error for chemically impossible input.
    """
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    to_rdkit = {v: k for k, v in _rdkit_bond_types().items()}
    rw = Chem.RWMol()
    for z, q in zip(mol.numbers.tolist(), mol.charges.tolist()):
        atom = Chem.Atom(int(z))
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for (i, j), kind in zip(mol.bond_index.T.tolist(), mol.bond_types.tolist()):
        if kind not in to_rdkit:
            raise ValueError(f"tensors_to_mol: bond category {kind} between atoms {i} and {j} is not 1..4")
        rw.AddBond(int(i), int(j), to_rdkit[kind])
        if kind == BOND_AROMATIC:
            rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
            rw.GetAtomWithIdx(int(i)).SetIsAromatic(True)
            rw.GetAtomWithIdx(int(j)).SetIsAromatic(True)
    conformer = Chem.Conformer(mol.num_atoms)
    for k, (x, y, z) in enumerate(mol.positions.detach().cpu().double().tolist()):
        conformer.SetAtomPosition(k, Point3D(x, y, z))
    rw.AddConformer(conformer, assignId=True)
    out = rw.GetMol()
    if sanitize:
        Chem.SanitizeMol(out)
    else:
        out.UpdatePropertyCache(strict=False)
    return out


# --- batching for the generator (torch-geometric) ---------------------------------------------------------------

CHARGE_VALUES: tuple[int, ...] = (-1, 0, 1)  # formal charges in QM9; class index = position in this tuple


def charge_class(charges: Tensor, values: Sequence[int] = CHARGE_VALUES) -> Tensor:
    """Class index of each formal charge in ``values``; ValueError for a charge outside them."""
    vocab = torch.as_tensor(list(values), device=charges.device, dtype=torch.long)
    match = charges.long().unsqueeze(-1) == vocab
    if not bool(match.any(-1).all()):
        raise ValueError(f"formal charges {sorted(set(charges[~match.any(-1)].tolist()))} are not in {list(values)}")
    return match.long().argmax(-1)


def to_pyg(item: dict, properties: Sequence[str] = (), property_names: Sequence[str] = ()):
    """One molecule (a ``QM9Dataset`` item) as a torch-geometric ``Data``: ``x`` atom-type index, ``charge`` class,
    ``pos`` (centred), ``edge_index``/``edge_attr`` bonds with i < j, ``y`` (1, P) selected properties."""
    from torch_geometric.data import Data

    pos = item["positions"].float()
    y = torch.zeros(1, len(properties))
    if properties:
        y = item["properties"][[list(property_names).index(p) for p in properties]].float().unsqueeze(0)
    return Data(x=item["atom_types"].long(), charge=charge_class(item["charges"]), pos=pos - pos.mean(0),
                edge_index=item["bond_index"].long(), edge_attr=item["bond_types"].long(), y=y,
                num_nodes=int(pos.shape[0]))


def dense_batch(data_list: Sequence) -> dict[str, Tensor]:
    """Collate torch-geometric molecules into the generator's dense layout (``Batch`` + ``to_dense_*``).

    Returns ``positions`` (B, N, 3), ``atom_types``/``charges`` (B, N), ``bonds`` (B, N, N) symmetric categories,
    ``mask`` (B, N) and ``properties`` (B, P).
    """
    from torch_geometric.data import Batch
    from torch_geometric.utils import to_dense_adj, to_dense_batch

    batch = Batch.from_data_list(list(data_list))
    positions, mask = to_dense_batch(batch.pos, batch.batch)
    types, _ = to_dense_batch(batch.x, batch.batch)
    charges, _ = to_dense_batch(batch.charge, batch.batch, fill_value=CHARGE_VALUES.index(0))
    upper = to_dense_adj(batch.edge_index, batch.batch, batch.edge_attr, max_num_nodes=mask.shape[1]).long()
    return {"positions": positions, "atom_types": types, "charges": charges, "bonds": upper + upper.transpose(1, 2),
            "mask": mask, "properties": batch.y}
