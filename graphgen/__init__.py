"""scoregen.graphgen: GDSS-style score-based generation of graphs and molecules."""

__version__ = "0.1.0"

from graphgen.checkpoint import ModelBundle, import_gdss, load_model, save_model  # noqa: E402
from graphgen.diffusion import GraphGenConfig, GraphScoreModel, build_model, build_system, gdss_loss  # noqa: E402
from graphgen.sample import SampleOutput, read_samples, sample_graphs, write_samples  # noqa: E402
from graphgen.train import train  # noqa: E402

__all__ = [
    "__version__",
    "GraphGenConfig",
    "GraphScoreModel",
    "ModelBundle",
    "SampleOutput",
    "build_model",
    "build_system",
    "gdss_loss",
    "import_gdss",
    "load_model",
    "read_samples",
    "sample_graphs",
    "save_model",
    "train",
    "write_samples",
]
