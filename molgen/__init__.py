"""scoregen.molgen: 3D molecule generation on QM9 — the SE(3)-equivariant flow-matching generator, data,
representation, metrics, DFT hooks, property regressors.

The generator's names (``MolFlowNet``, ``generate``, ``train_generator``, ...) are imported on first use, so that
``import molgen`` and ``molgen --help`` do not pay for torch-geometric.
"""

__version__ = "0.1.0"

from molgen.data import QM9Dataset, prepare_qm9, qm9_splits  # noqa: E402
from molgen.io import MoleculeFile, molecules_to_batch, read_molecules  # noqa: E402
from molgen.metrics import default_evaluators, evaluate_molecules  # noqa: E402
from molgen.pretrained import load_pretrained  # noqa: E402
from molgen.regressor import PropertyRegressor, RegressorConfig, load_regressor, save_regressor  # noqa: E402
from molgen.representation import MolBatch, MolTensors, mol_to_tensors, tensors_to_mol  # noqa: E402
from molgen.train_regressor import RegressorTrainConfig, evaluate_regressor, train_regressor  # noqa: E402

_LAZY = {
    "FlowNetConfig": "molgen.model", "MolFlowNet": "molgen.model",
    "ConditioningConfig": "molgen.conditioning",
    "FlowConfig": "molgen.flow", "SamplerConfig": "molgen.flow", "sample_molecules": "molgen.flow",
    "Generator": "molgen.checkpoint", "load_generator": "molgen.checkpoint", "save_generator": "molgen.checkpoint",
    "Generated": "molgen.sampling", "generate": "molgen.sampling", "load_default_generator": "molgen.sampling",
    "write_sdf": "molgen.sampling",
    "GeneratorTrainConfig": "molgen.train", "MolListDataset": "molgen.train", "train_generator": "molgen.train",
    # the model -> samples contract shared by all three domains (shared.contract)
    "load_model": "molgen.api", "sample": "molgen.api", "evaluate": "molgen.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molgen' has no attribute {name!r}")


__all__ = [
    "__version__",
    *sorted(_LAZY),
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
