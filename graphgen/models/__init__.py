"""GDSS score networks for node features and adjacency."""

from .layers import DenseGCNConv, MLP, mask_adjs, mask_x, pow_tensor
from .score_networks import ScoreNetworkA, ScoreNetworkX, ScoreNetworkX_GMH, TimeEmbedding

__all__ = ["DenseGCNConv", "MLP", "mask_adjs", "mask_x", "pow_tensor",
           "ScoreNetworkA", "ScoreNetworkX", "ScoreNetworkX_GMH", "TimeEmbedding"]
