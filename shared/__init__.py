"""scoregen's domain-free score-based core: tensors only (torch, numpy, scipy).

Never imports RDKit, pymatgen, ASE, networkx or a domain package.
"""

__version__ = "0.1.0"
