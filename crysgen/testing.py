"""Small, known crystal sets for tests, examples and benchmarks (no downloads): carbon polymorphs built with
pymatgen's ``Structure.from_spacegroup`` (diamond Fd-3m, graphite and lonsdaleite P6_3/mmc), supercelled,
strained and perturbed like a one-element CDVAE set (carbon-24 has 6-24 atoms per cell), and random P1 carbon
cells with a minimum interatomic distance.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

__all__ = ["POLYMORPHS", "carbon_set", "diamond", "graphite", "lonsdaleite", "perturbed", "random_carbon",
           "supercell_options"]


def diamond(a: float = 3.567):
    """Conventional diamond cell, 8 atoms, Fd-3m (227)."""
    return _from_spacegroup("Fd-3m", ("cubic", a), ("C",), ((0, 0, 0),)).copy()


def graphite(a: float = 2.464, c: float = 6.711):
    """Hexagonal (AB) graphite, 4 atoms, P6_3/mmc (194)."""
    return _from_spacegroup("P6_3/mmc", ("hexagonal", a, c), ("C", "C"), ((0, 0, 0.25), (1 / 3, 2 / 3, 0.25))).copy()


def lonsdaleite(a: float = 2.522, c: float = 4.119):
    """Hexagonal diamond, 4 atoms, P6_3/mmc (194)."""
    return _from_spacegroup("P6_3/mmc", ("hexagonal", a, c), ("C",), ((1 / 3, 2 / 3, 0.0625),)).copy()


@lru_cache(maxsize=64)
def _from_spacegroup(group: str, lattice: tuple, species: tuple, coords: tuple):
    """``Structure.from_spacegroup``, cached (building pymatgen's SpaceGroup takes ~0.4 s)."""
    from pymatgen.core import Lattice, Structure

    kind, *params = lattice
    return Structure.from_spacegroup(group, getattr(Lattice, kind)(*params), list(species),
                                     [list(c) for c in coords])


POLYMORPHS = {"diamond": diamond, "graphite": graphite, "lonsdaleite": lonsdaleite}


def supercell_options(min_sites: int = 6, max_sites: int = 24) -> list[tuple[str, tuple[int, int, int]]]:
    """(base cell, diagonal supercell) pairs with ``min_sites..max_sites`` atoms; base cells are the three
    polymorphs and diamond's 2-atom primitive cell ("diamond-primitive")."""
    sizes = {"diamond": 8, "diamond-primitive": 2, "graphite": 4, "lonsdaleite": 4}
    options = []
    for name, size in sizes.items():
        for scale in itertools.product((1, 2, 3), repeat=3):
            if scale != tuple(sorted(scale)):  # one orientation of each shape
                continue
            if min_sites <= size * int(np.prod(scale)) <= max_sites:
                options.append((name, scale))
    return options


def _base(name: str):
    if name == "diamond-primitive":
        return diamond().get_primitive_structure()
    return POLYMORPHS[name]()


def perturbed(structure, rng: np.random.Generator, sigma: float = 0.02, strain: float = 0.02):
    """A copy with a random symmetric lattice strain (entries uniform in +-``strain``) and Gaussian Cartesian
    displacements of ``sigma`` A per coordinate."""
    from pymatgen.core import Lattice, Structure

    eps = rng.uniform(-strain, strain, (3, 3))
    deformation = np.eye(3) + 0.5 * (eps + eps.T)
    lattice = Lattice(structure.lattice.matrix @ deformation)
    frac = structure.frac_coords + rng.normal(0.0, sigma, (len(structure), 3)) @ np.linalg.inv(lattice.matrix)
    return Structure(lattice, structure.species, frac % 1.0)


def carbon_set(n: int, seed: int = 0, min_sites: int = 6, max_sites: int = 24, sigma: float = 0.02,
               strain: float = 0.03) -> list:
    """``n`` carbon crystals: polymorph supercells of ``min_sites..max_sites`` atoms in turn, each strained and
    perturbed (seeded)."""
    rng = np.random.default_rng(seed)
    options = supercell_options(min_sites, max_sites)
    if not options:
        raise ValueError(f"no polymorph supercell has {min_sites}..{max_sites} atoms")
    cells = {option: _base(option[0]).make_supercell(option[1], in_place=False) for option in options}
    return [perturbed(cells[options[index % len(options)]], rng, sigma, strain) for index in range(n)]


def random_carbon(n_sites: int, rng: np.random.Generator, volume_per_atom: tuple[float, float] = (8.0, 11.0),
                  min_distance: float = 1.2, max_tries: int = 10_000):
    """A random P1 carbon cell: lattice of random shape (angles 75-105 degrees) and volume, atoms placed one
    by one at least ``min_distance`` A (periodic) from the others."""
    from pymatgen.core import Lattice, Structure

    volume = n_sites * rng.uniform(*volume_per_atom)
    lengths = rng.uniform(0.8, 1.25, 3)
    lengths *= (volume / np.prod(lengths)) ** (1 / 3)
    lattice = Lattice.from_parameters(*lengths, *rng.uniform(75, 105, 3))
    points: list[np.ndarray] = []
    for _ in range(max_tries):
        point = rng.uniform(size=3)
        if not points or lattice.get_all_distances([point], points).min() > min_distance:
            points.append(point)
            if len(points) == n_sites:
                return Structure(lattice, ["C"] * n_sites, points)
    raise ValueError(f"could not place {n_sites} atoms {min_distance} A apart in {lattice.volume:.1f} A^3")
