"""graphgen metrics. Each group of metrics adds its own import lines below (append only)."""

from graphgen.metrics.molecules import (  # noqa: F401
    canonical_smiles,
    correct_mol,
    evaluate_molecules,
    gdss_molecule_metrics,
    is_valence_valid,
    largest_fragment,
    molecule_graphs,
    molecule_statistics,
    novelty,
    uniqueness,
    validity,
    validity_without_correction,
)
from graphgen.metrics.fcd import (  # noqa: F401
    chemnet_activations,
    fcd_score,
    frechet_distance,
    gaussian_statistics,
    reference_statistics,
)
from graphgen.metrics.graph_mmd import (  # noqa: F401
    clustering_histogram,
    compute_mmd,
    degree_histogram,
    eval_graph_list,
    gaussian_emd_kernel,
    gaussian_kernel,
    gaussian_tv_kernel,
    mean_orbit_counts,
    pairwise_emd_1d,
)
from graphgen.metrics.nspdk import nspdk_features, nspdk_kernel, nspdk_mmd  # noqa: F401
from graphgen.metrics.orbits import orbit_counts, orbit_counts_from_adjacency  # noqa: F401
from graphgen.metrics.evaluators import SampleSet, default_evaluators  # noqa: F401
