"""QM9's Gaussian-style 6-31G(2df,p): the Cartesian-d emulation is exact where PySCF can check it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from molgen.qm_basis import qm9_basis

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pyscf") is None, reason="pyscf not installed")

WATER = [("O", (0.0, 0.0, 0.1173)), ("H", (0.0, 0.7572, -0.4692)), ("H", (0.0, -0.7572, -0.4692))]


def _is_cartesian_d_extra(shell) -> bool:
    return shell[0] == 0 and len(shell) == 3 and shell[1][1] > 0 > shell[2][1]


def test_shells_per_element():
    basis = qm9_basis(["O", "H", "C", "O"])
    assert sorted(basis) == ["C", "H", "O"]
    heavy = basis["O"]
    assert sorted(s[1][0] for s in heavy if s[0] == 2) == [0.4, 1.6]  # 2x and 0.5x the 6-31G* exponent 0.8
    assert [s[1][0] for s in heavy if s[0] == 3] == [1.4]
    assert sum(_is_cartesian_d_extra(s) for s in heavy) == 2
    assert [s for s in basis["H"] if s[0] == 1] == [[1, [1.1, 1.0]]]
    with pytest.raises(ValueError, match="covers H, C, N, O, F"):
        qm9_basis(["Cl"])


def test_extra_s_shell_is_r2_gaussian():
    """The two-primitive s contraction (coefficients of normalised primitives, PySCF's convention) has the radial
    shape r^2 exp(-a r^2) to O(h^2)."""
    from pyscf.gto import gto_norm

    (_, (a1, c1), (a2, c2)) = next(s for s in qm9_basis(["N"])["N"] if _is_cartesian_d_extra(s))
    a = (a1 + a2) / 2
    r = np.linspace(0.0, 6.0, 601)
    contracted = c1 * gto_norm(0, a1) * np.exp(-a1 * r**2) + c2 * gto_norm(0, a2) * np.exp(-a2 * r**2)
    assert contracted == pytest.approx(r**2 * np.exp(-a * r**2), abs=1e-5)


def test_spherical_d_plus_extra_s_equals_cartesian_d():
    """Without f shells, our "6D" basis must give PySCF's own cart=True energy (where every shell is Cartesian)."""
    from pyscf import gto, scf

    ours = {el: [s for s in shells if s[0] != 3] for el, shells in qm9_basis(["O", "H"]).items()}
    cartesian = {el: [s for s in shells if not _is_cartesian_d_extra(s)] for el, shells in ours.items()}
    energies = []
    for basis, cart in ((ours, False), (cartesian, True)):
        mol = gto.M(atom=WATER, basis=basis, cart=cart, unit="Angstrom", verbose=0)
        assert mol.nao == 2 * (2 + 3) + 9 + 12 # H: 2 s + 3 p each; O: 9 (6-31G) + two 6-component d shells
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-11
        energies.append(mf.kernel())
    assert energies[0] == pytest.approx(energies[1], abs=1e-7)
