"""shared.safe_load: weights-only loading whose failures say what the file is, without torch's unsafe advice."""

from __future__ import annotations

import gzip
import pickle
import zipfile

import pytest
import torch

from shared.safe_load import describe_unloadable, safe_torch_load
from shared.training.checkpoint import CheckpointError, load_checkpoint


class Foreign:
    """A class only arbitrary-code loading could rebuild."""


def test_plain_files_load_and_extra_safe_globals_are_honoured(tmp_path):
    torch.save({"w": torch.arange(3)}, tmp_path / "ok.pt")
    assert safe_torch_load(tmp_path / "ok.pt", "model")["w"].tolist() == [0, 1, 2]
    torch.save({"obj": Foreign()}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="needs arbitrary code"):
        safe_torch_load(tmp_path / "foreign.pt", "model")
    loaded = safe_torch_load(tmp_path / "foreign.pt", "model", safe_globals=[Foreign])
    assert isinstance(loaded["obj"], Foreign)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("empty.pt", b"", "an empty file (0 bytes)"),
    ("mols.smi", b"CCO\nc1ccccc1 benzene\n", "a text file (SMILES?), first line 'CCO'"),
    ("notes.pt", b"C1=CC=CC=C1\nCCN\n", "a text file (SMILES?), first line 'C1=CC=CC=C1'"),
    ("frames.xyz", b"3\nwater\nO 0 0 0\n", "a text file (XYZ coordinates?), first line '3'"),
    ("meta.pt", b'{"format": 1}\n', "a text file (JSON?)"),
    ("crystal.pt", b"data_CaTiO3\n_cell_length_a 4\n", "a text file (a CIF crystal?)"),
    ("prose.pt", b"Dear reader, this is prose.\n", "a text file, first line 'Dear reader, this is prose.'"),
    ("long.pt", b"x" * 100 + b"\n", "first line '" + "x" * 37 + "...'"),
    ("blob.pt", bytes(range(256)), "binary data of an unknown kind (256 bytes, beginning 00 01 02"),
    ("model.pt.gz", gzip.compress(b"anything"), "a gzip-compressed file"),
])
def test_what_a_file_seems_to_be(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        safe_torch_load(path, "thing file")
    message = str(info.value)
    assert message.startswith(f"{path} is not a thing file: it is ") and expected in message, message
    assert "weights_only=False" not in message and "\n" not in message


def test_archives_and_pickles(tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 200])
    assert "truncated or damaged PyTorch file" in describe_unloadable(tmp_path / "cut.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert describe_unloadable(tmp_path / "other.zip") == "a zip archive, not a PyTorch file (it holds readme.txt)"
    (tmp_path / "foreign.pkl").write_bytes(pickle.dumps([Foreign(), Foreign()], protocol=2))
    described = describe_unloadable(tmp_path / "foreign.pkl")
    assert described.startswith("a Python pickle that needs arbitrary code") and "Foreign" in described
    assert described.count("Foreign") == 1  # each referenced class is named once
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_model.pt")  # a module pickled whole, not a state dict
    described = describe_unloadable(tmp_path / "whole_model.pt")
    assert described.startswith("a PyTorch file that needs arbitrary code") and "linear.Linear" in described
    assert "set" not in described  # builtins.set (written as __builtin__.set) is allowed: not named
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"a": list(range(100))})[:30])
    assert describe_unloadable(tmp_path / "cut.pkl") == "a truncated pickle (it ends before its STOP opcode)"
    assert describe_unloadable(tmp_path / "missing.pt") == "unreadable (No such file or directory)"


def test_error_class_is_the_callers(tmp_path):
    (tmp_path / "ckpt.pt").write_text("step: 3\n")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt is not a scoregen training checkpoint: it is a text file"):
        load_checkpoint(tmp_path / "ckpt.pt")
