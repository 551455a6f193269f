"""Physical constants and the units molgen reports properties in (the one place unit conversions live).

QM9 ships HOMO/LUMO/gap, ZPVE and the energies in Hartree; molgen reports them in eV. Polarisability stays in
Bohr^3, the dipole in Debye, <R^2> in Bohr^2 and Cv in cal/(mol K), as in the QM9 paper.
"""

from __future__ import annotations

__all__ = [
    "HARTREE_TO_EV",
    "BOHR_TO_ANGSTROM",
    "ANGSTROM_TO_BOHR",
    "E_BOHR_TO_DEBYE",
    "E_ANGSTROM_TO_DEBYE",
    "QM9_PROPERTY_UNITS",
]

# CODATA 2018
HARTREE_TO_EV = 27.211386245988
BOHR_TO_ANGSTROM = 0.529177210903
ANGSTROM_TO_BOHR = 1.0 / BOHR_TO_ANGSTROM
# 1 D = 1e-21 / c C m; e * a0 = 8.4783536255e-30 C m
E_BOHR_TO_DEBYE = 2.541746473
E_ANGSTROM_TO_DEBYE = E_BOHR_TO_DEBYE * ANGSTROM_TO_BOHR

# property name -> (unit molgen reports, factor from the unit qm9pack stores)
QM9_PROPERTY_UNITS: dict[str, tuple[str, float]] = {
    "mu": ("D", 1.0),
    "alpha": ("Bohr^3", 1.0),
    "homo": ("eV", HARTREE_TO_EV),
    "lumo": ("eV", HARTREE_TO_EV),
    "gap": ("eV", HARTREE_TO_EV),
    "r2": ("Bohr^2", 1.0),
    "zpve": ("eV", HARTREE_TO_EV),
    "U0": ("eV", HARTREE_TO_EV),
    "U": ("eV", HARTREE_TO_EV),
    "H": ("eV", HARTREE_TO_EV),
    "G": ("eV", HARTREE_TO_EV),
    "Cv": ("cal/(mol K)", 1.0),
}
