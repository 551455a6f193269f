"""scoregen.molgen: 3D molecule generation on QM9 — data, representation, metrics, DFT hooks, property regressors."""

__version__ = "0.1.0"

from molgen.data import QM9Dataset, prepare_qm9, qm9_splits  # noqa: E402
from molgen.io import MoleculeFile, molecules_to_batch, read_molecules  # noqa: E402
from molgen.metrics import default_evaluators, evaluate_molecules  # noqa: E402
from molgen.pretrained import load_pretrained  # noqa: E402
from molgen.regressor import PropertyRegressor, RegressorConfig, load_regressor, save_regressor  # noqa: E402
from molgen.representation import MolBatch, MolTensors, mol_to_tensors, tensors_to_mol  # noqa: E402
from molgen.train_regressor import RegressorTrainConfig, evaluate_regressor, train_regressor  # noqa: E402

__all__ = [
    "__version__",
    "MolBatch",
    "MolTensors",
    "MoleculeFile",
    "PropertyRegressor",
    "QM9Dataset",
    "RegressorConfig",
    "RegressorTrainConfig",
    "default_evaluators",
    "evaluate_molecules",
    "evaluate_regressor",
    "load_pretrained",
    "load_regressor",
    "mol_to_tensors",
    "molecules_to_batch",
    "prepare_qm9",
    "qm9_splits",
    "read_molecules",
    "save_regressor",
    "tensors_to_mol",
    "train_regressor",
]
