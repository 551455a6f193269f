"""Config loading: YAML + dotted overrides into nested dataclasses, strict key/type checks, YAML round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Optional

import pytest

from shared.config import ConfigError, apply_overrides, config_to_dict, load_config, save_config


@dataclasses.dataclass
class Model:
    hidden: int = 64
    activation: Literal["silu", "relu"] = "silu"
    dropout: float = 0.0


@dataclasses.dataclass
class Experiment:
    name: str
    model: Model = dataclasses.field(default_factory=Model)
    lr: float = 1e-3
    clip: Optional[float] = None  # noqa: UP045 - the typing.Optional spelling must work too
    steps: int | None = 100
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    betas: tuple[float, float] = (0.9, 0.999)
    sizes: tuple[int, ...] = ()
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    use_ema: bool = True
    out: Path = Path("runs")


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: qm9\nmodel:\n  hidden: 128\nlr: 2e-4\nlayers: [3, 4]\n")
    cfg = load_config(Experiment, path, overrides=["model.activation=relu", "clip=1", "betas=[0.5, 0.6]",
                                                   "weights={a: 1, b: 0.5}", "sizes=[2, 3, 4]", "steps=null",
                                                   "out=/tmp/x"])
    assert cfg.model == Model(hidden=128, activation="relu", dropout=0.0)
    assert cfg.lr == 2e-4 and isinstance(cfg.lr, float)  # "2e-4" is a float here, not a YAML 1.1 string
    assert cfg.clip == 1.0 and isinstance(cfg.clip, float)  # int accepted for float
    assert cfg.steps is None and cfg.layers == [3, 4] and cfg.sizes == (2, 3, 4)
    assert cfg.betas == (0.5, 0.6) and cfg.weights == {"a": 1.0, "b": 0.5} and cfg.out == Path("/tmp/x")


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(Experiment, {"name": "x", "betas": [0.1, 0.2], "weights": {"k": 3.5}, "clip": 1e-12})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Experiment, tmp_path / "c.yaml") == cfg
    assert config_to_dict(cfg)["betas"] == [0.1, 0.2]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writer left no temporary file


@pytest.mark.parametrize("data, overrides, message", [
    ({"name": "x", "lr_rate": 1}, [], "unknown key 'lr_rate'"),
    ({"name": "x", "model": {"hiden": 3}}, [], "unknown key 'model.hiden'"),
    ({"name": "x"}, ["model.depth=3"], "valid keys of model: ['activation', 'dropout', 'hidden']"),
    ({"name": "x", "lr": "fast"}, [], "lr: expected float, got 'fast' (str)"),
    ({"name": "x", "model": {"hidden": 1.5}}, [], "model.hidden: expected int, got 1.5"),
    ({"name": "x", "model": {"hidden": True}}, [], "model.hidden: expected int"),  # bool is not an int here
    ({"name": "x", "use_ema": 1}, [], "use_ema: expected bool"),
    ({"name": "x", "model": {"activation": "gelu"}}, [], "expected one of ['silu', 'relu'], got 'gelu'"),
    ({"name": "x", "layers": [1, "a"]}, [], "layers[1]: expected int"),
    ({"name": "x", "betas": [0.9]}, [], "betas: expected 2 items"),
    ({"name": "x", "weights": {"a": "b"}}, [], "weights.a: expected float"),
    ({"name": "x", "clip": "none"}, [], "clip: expected float | None"),
    ({"name": "x", "model": 3}, [], "model: expected a mapping for Model, got int"),
    ({}, [], "missing required key 'name'"),
    ({"name": "x"}, ["lr"], "bad override 'lr'"),
    ({"name": "x"}, ["=3"], "bad override '=3'"),
    ({"name": "x"}, ["model..hidden=3"], "bad override"),
    ({"name": "x", "lr": 0.1}, ["lr.x=3"], "lr holds a float, not a section"),
    ({"name": "x"}, ["lr.x=3"], "lr: expected float, got {'x': 3} (dict)"),
    ({"name": "x"}, ["layers=[1, 2"], "invalid YAML"),
])
def test_errors_name_the_key(data, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(Experiment, data, overrides)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(Experiment, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Experiment, tmp_path / "list.yaml")


def test_overrides_do_not_mutate_input():
    data = {"model": {"hidden": 1}}
    out = apply_overrides(data, ["model.hidden=2", "new.deep.key=[1, 2]"])
    assert data == {"model": {"hidden": 1}}
    assert out == {"model": {"hidden": 2}, "new": {"deep": {"key": [1, 2]}}}


def test_post_init_errors_become_config_errors():
    from shared.training import TrainerConfig

    with pytest.raises(ConfigError, match="max_steps must be >= 1"):
        load_config(TrainerConfig, {"max_steps": 0})


@dataclasses.dataclass
class _CheckedPart:
    width: int = 1
    depth: int = 1

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.depth < 1:
            raise ValueError(f"part.depth must be >= 1, got {self.depth}")


@dataclasses.dataclass
class _HoldsAPart:
    part: _CheckedPart = dataclasses.field(default_factory=_CheckedPart)


def test_a_section_error_names_its_place_once():
    with pytest.raises(ConfigError) as err:
        load_config(_HoldsAPart, {"part": {"width": 0}})
    assert str(err.value) == "part: width must be >= 1, got 0"
    with pytest.raises(ConfigError) as err:  # the message already says where: no "part: part.depth"
        load_config(_HoldsAPart, {"part": {"depth": 0}})
    assert str(err.value) == "part.depth must be >= 1, got 0"



@dataclasses.dataclass
class _Inner:
    lr: float = 1.0
    steps: int = 10


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=lambda: _Inner(lr=0.5, steps=99))


def test_partial_section_keeps_default_factory_values():
    cfg = load_config(_Outer, {}, overrides=["inner.steps=3"])
    assert cfg.inner == _Inner(lr=0.5, steps=3)  # lr keeps the factory's 0.5, not the class default 1.0
    assert load_config(_Outer, {"inner": {"lr": 2.0}}).inner == _Inner(lr=2.0, steps=99)
