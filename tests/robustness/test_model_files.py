"""A file that is not a model, given to ``sample`` (or the regressor loader), is one line with exit code 2 that
names the file and says what it is; torch's advice to load with weights_only=False never reaches the user."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
REAL = {"graphgen": ROOT / "graphgen/pretrained/qm9.pt", "crysgen": ROOT / "crysgen/pretrained/perov5.pt",
        "molgen": ROOT / "molgen/pretrained/generator.pt"}
KIND = {"graphgen": "graphgen model file", "crysgen": "crysgen model file", "molgen": "molgen generator file"}


class Payload:
    """Stands for any class a malicious or foreign pickle could name."""


def bad_files(tmp_path: Path, real: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each bad file with the phrases the error must contain."""
    smi = tmp_path / "samples.smi"
    smi.write_text("CCO\nc1ccccc1\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    data = real.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    torch_pickle = tmp_path / "code.pt"
    torch.save({"model": Payload()}, torch_pickle)
    plain_pickle = tmp_path / "code.pkl"
    plain_pickle.write_bytes(pickle.dumps(Payload()))
    return {
        "text": (smi, ["a text file (SMILES?)", "first line 'CCO'"]),
        "empty": (empty, ["an empty file (0 bytes)"]),
        "truncated": (truncated, ["truncated or damaged PyTorch file"]),
        "torch pickle": (torch_pickle, ["PyTorch file that needs arbitrary code", "Payload", "weights_only"]),
        "plain pickle": (plain_pickle, ["Python pickle that needs arbitrary code", "Payload"]),
    }


def sample_argv(program: str, model: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / ("out.sdf" if program == "molgen" else "out.smi" if program == "graphgen" else "out")
    return ["sample", str(model), "-n", "2", "--out", str(out), "--no-progress", "--device", "cpu"]


def cli_main(program: str):
    import importlib

    return importlib.import_module(f"{program}.cli").main


@pytest.mark.parametrize("case", ["text", "empty", "truncated", "torch pickle", "plain pickle"])
@pytest.mark.parametrize("program", ["graphgen", "crysgen", "molgen"])
def test_sample_rejects_a_file_that_is_not_a_model(program, case, tmp_path, capsys):
    path, phrases = bad_files(tmp_path, REAL[program])[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli_main(program)(sample_argv(program, path, tmp_path))
    out, err = capsys.readouterr()
    assert not [w for w in caught if issubclass(w.category, UserWarning)], "a warning would be a second line"
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"{program}: error: {path} is not a {KIND[program]}"), err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert "weights_only=False" not in err and "Re-running" not in err and "trusted source" not in err
    assert not any(tmp_path.glob("out*")), "nothing is written for a bad model"


@pytest.mark.parametrize("program", ["graphgen", "crysgen", "molgen"])
def test_the_real_model_file_still_loads(program):
    loaders = {"graphgen": "graphgen.checkpoint:load_model", "crysgen": "crysgen.checkpoint:load_model",
               "molgen": "molgen.checkpoint:load_generator"}
    import importlib

    module, name = loaders[program].split(":")
    assert getattr(importlib.import_module(module), name)(REAL[program]) is not None


def test_regressor_loader_says_what_the_file_is(tmp_path):
    from molgen.regressor import load_regressor

    regressor = ROOT / "molgen/pretrained/gap.pt"
    assert load_regressor(regressor).metadata  # the shipped file loads
    for path, phrases in bad_files(tmp_path, regressor).values():
        with pytest.raises(ValueError) as info:
            load_regressor(path)
        message = str(info.value)
        assert message.startswith(f"{path} is not a molgen regressor file"), message
        assert all(phrase in message for phrase in phrases), (phrases, message)
        assert "weights_only=False" not in message
