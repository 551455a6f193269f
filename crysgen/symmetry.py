"""Space groups of crystals and optional symmetrisation of generated ones (pymatgen's SpacegroupAnalyzer,
i.e. spglib).

The matrix representation decodes every sample as a P1 cell whose atoms sit near, not on, symmetric
positions, so at a tight tolerance nearly every sample is P1. ``symmetrize`` replaces a structure by pymatgen's
*refined* structure at ``symprec``: the space group spglib finds within that distance tolerance, with the
lattice made exactly that of the group and every site moved onto its symmetric position. It returns the
conventional cell when that has no more sites than the input, else the primitive standard cell, so a
symmetrised sample never grows beyond the model's site count.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

__all__ = ["SYMPREC", "space_group_number", "symmetrize", "symmetrize_structures"]

SYMPREC = 0.1  # the evaluation's tolerance (A), as DiffCSP/CDVAE-style space-group statistics use


def space_group_number(structure, symprec: float = SYMPREC) -> int:
    """International space-group number at ``symprec`` (A); 0 when spglib finds no symmetry dataset."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
        except Exception:  # noqa: BLE001 - spglib gives up on overlapping or degenerate cells
            return 0


def symmetrize(structure, symprec: float = SYMPREC):
    """The refined (idealised) structure at ``symprec`` (see module docstring); None when spglib finds no
    symmetry dataset for it."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if symprec <= 0:
        raise ValueError(f"the symmetrisation tolerance must be > 0 A, got {symprec}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
            refined = analyzer.get_refined_structure()
            if len(refined) > len(structure):
                refined = SpacegroupAnalyzer(refined, symprec=1e-3).get_primitive_standard_structure()
        except Exception:  # noqa: BLE001 - no symmetry dataset (overlapping atoms, degenerate cell)
            return None
    return refined if len(refined) <= len(structure) else None


def symmetrize_structures(structures: Sequence[Any], symprec: float = SYMPREC) -> tuple[list, list[bool]]:
    """``symmetrize`` each structure (None stays None); one that cannot be symmetrised is kept as it is.
    Returns the structures and, per structure, whether it was symmetrised."""
    out, done = [], []
    for structure in structures:
        refined = None if structure is None else symmetrize(structure, symprec)
        out.append(structure if refined is None else refined)
        done.append(refined is not None)
    return out, done
