"""scoregen.graphgen: GDSS-style score-based generation of graphs and molecules."""

__version__ = "0.1.0"

from graphgen.api import GraphSamples, evaluate, load_model, sample  # noqa: E402
from graphgen.checkpoint import ModelBundle, default_model_path, import_gdss, save_model  # noqa: E402
from graphgen.diffusion import GraphGenConfig, GraphScoreModel, build_model, build_system, gdss_loss  # noqa: E402
from graphgen.io import read_samples, write_samples  # noqa: E402
from graphgen.sampling import SampleOutput, sample_graphs  # noqa: E402
from graphgen.train import train  # noqa: E402

__all__ = [
    "__version__",
    "GraphGenConfig",
    "GraphSamples",
    "GraphScoreModel",
    "ModelBundle",
    "SampleOutput",
    "build_model",
    "build_system",
    "default_model_path",
    "evaluate",
    "gdss_loss",
    "import_gdss",
    "load_model",
    "read_samples",
    "sample",
    "sample_graphs",
    "save_model",
    "train",
    "write_samples",
]
