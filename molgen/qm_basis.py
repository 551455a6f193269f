"""QM9's basis set as Gaussian 09 defines it, for PySCF: 6-31G(2df,p) with Pople's polarisation exponents and
Cartesian d shells (Gaussian's "6D 7F" default for the 6-31G family).

Why not PySCF's built-in ``"6-31G(2df,p)"``? That definition (from the Basis Set Exchange) takes the 2d exponents
of the 6-311G family (O: 2.584, 0.646) and PySCF uses spherical d; with it, QM9's water dipole comes out
1.98 D instead of 1.85 D. Gaussian splits the single 6-31G* d exponent (0.8 for C N O F) into 2x and 0.5x
(1.6, 0.4) and keeps six Cartesian d functions. Measured on QM9 molecules 2-12 at their QM9 geometries
(``benchmarks/molgen_dft_agreement.py``), this basis reproduces QM9's HOMO, LUMO and gap to <= 1.5 meV and the
dipole to <= 1e-4 D (QM9's printed precision) on 16 molecules; the built-in one is off by up to 35 meV (LUMO),
47 meV (gap) and 0.13 D (water's dipole).

PySCF applies ``cart=True`` to every shell, which would also make the f shells Cartesian (Gaussian keeps 7
pure f). A Cartesian d shell spans the five pure d functions plus ``r^2 exp(-a r^2)``, so we use spherical d
and add that extra function as a contracted s shell: the central difference
``(exp(-(a-h) r^2) - exp(-(a+h) r^2)) / 2h = r^2 exp(-a r^2) + O(h^2)`` with ``h = 1e-3 a`` (results agree
with ``h = 1e-2 a`` to 1e-4 eV, so the O(h^2) term is negligible).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["QM9_BASIS_NAME", "QM9_BASIS_ELEMENTS", "qm9_basis"]

QM9_BASIS_NAME = "qm9"
QM9_BASIS_ELEMENTS = ("H", "C", "N", "O", "F")

_D_EXPONENT_631G_STAR = 0.8  # 6-31G* d exponent of C, N, O, F
_F_EXPONENTS = {"C": 0.8, "N": 1.0, "O": 1.4, "F": 1.85}  # Frisch, Pople & Binkley (1984)
_H_P_EXPONENT = 1.1  # 6-31G** p exponent of H
_FINITE_DIFFERENCE = 1e-3


def _cartesian_d_extra(exponent: float) -> list:
    """The s-type member ``r^2 exp(-a r^2)`` of a Cartesian d shell, as a two-primitive contracted s shell.

    PySCF's contraction coefficients multiply *normalised* primitives, so each is divided by its primitive's
    norm; otherwise the different norms of the two exponents leave an O(1) plain ``exp(-a r^2)`` admixture.
    """
    from pyscf.gto import gto_norm

    h = _FINITE_DIFFERENCE * exponent
    lo, hi = exponent - h, exponent + h
    return [0, [lo, 1.0 / (2 * h) / gto_norm(0, lo)], [hi, -1.0 / (2 * h) / gto_norm(0, hi)]]


def qm9_basis(elements: Iterable[str]) -> dict[str, list]:
    """PySCF basis dict for ``elements`` (symbols): Gaussian's 6-31G(2df,p), 6D 7F; see the module docstring."""
    from pyscf import gto

    basis = {}
    for symbol in sorted(set(elements)):
        if symbol not in QM9_BASIS_ELEMENTS:
            raise ValueError(f"basis {QM9_BASIS_NAME!r} covers {', '.join(QM9_BASIS_ELEMENTS)} (QM9's elements), "
                             f"not {symbol}; pass basis='6-31G(2df,p)' or another PySCF basis name")
        shells = list(gto.basis.load("6-31G", symbol))
        if symbol == "H":
            shells.append([1, [_H_P_EXPONENT, 1.0]])
        else:
            d_exponents = (2.0 * _D_EXPONENT_631G_STAR, 0.5 * _D_EXPONENT_631G_STAR)
            shells += [[2, [a, 1.0]] for a in d_exponents]
            shells.append([3, [_F_EXPONENTS[symbol], 1.0]])
            shells += [_cartesian_d_extra(a) for a in d_exponents]
        basis[symbol] = shells
    return basis
