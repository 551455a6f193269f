"""scoregen.crysgen: crystals as one matrix (DiffCrysGen), learned with EDM diffusion."""

__version__ = "0.1.0"

from crysgen.api import evaluate, load_model, sample  # noqa: E402
from crysgen.checkpoint import CrystalModel, default_checkpoint, save_model  # noqa: E402
from crysgen.data import DATASETS, CrystalDataset, load_cdvae_csv, load_dataset  # noqa: E402
from crysgen.diffusion import CrystalDenoiser, DiffusionConfig, SamplingError, sample_matrices  # noqa: E402
from crysgen.evaluation import evaluate_crystals, make_evaluators  # noqa: E402
from crysgen.hooks import ASECalculatorHook, CHGNetHook, energy_above_hull, export_vasp_inputs  # noqa: E402
from crysgen.model import UNet1D, UNetConfig  # noqa: E402
from crysgen.representation import CrystalEncoder, MatrixScaler, write_cifs  # noqa: E402
from crysgen.sampling import SampleResult, sample_crystals, write_samples  # noqa: E402
from crysgen.train import CrysgenConfig, DataConfig, load_train_config, train  # noqa: E402

__all__ = [
    "ASECalculatorHook", "CHGNetHook", "CrysgenConfig", "CrystalDataset", "CrystalDenoiser", "CrystalEncoder",
    "CrystalModel", "DATASETS", "DataConfig", "DiffusionConfig", "MatrixScaler", "SampleResult", "SamplingError",
    "UNet1D", "UNetConfig", "__version__", "default_checkpoint", "energy_above_hull", "evaluate", "evaluate_crystals",
    "export_vasp_inputs", "load_cdvae_csv", "load_dataset", "load_model", "load_train_config", "make_evaluators",
    "sample", "sample_crystals", "sample_matrices", "save_model", "train", "write_cifs", "write_samples",
]
