"""One vocabulary of training-config keys: trainer.* and batch_size read the same in all three domains."""

import pytest

from shared.config import TRAINER_SECTION_ALIASES, ConfigError, apply_key_aliases


def test_aliases_move_sections_leaves_and_overrides():
    data = {"train": {"lr": 1e-3}, "data": {"batch_size": 32, "name": "x"}}
    moved, overrides = apply_key_aliases(data, ["train.seed=3", "data.batch_size=8", "model.depth=2"],
                                         TRAINER_SECTION_ALIASES)
    assert moved == {"trainer": {"lr": 1e-3}, "data": {"name": "x"}, "batch_size": 32}
    assert overrides == ["trainer.seed=3", "batch_size=8", "model.depth=2"]
    assert data["train"] == {"lr": 1e-3}  # the input is not modified


def test_a_setting_given_under_both_spellings_is_an_error():
    with pytest.raises(ConfigError, match="twice"):
        apply_key_aliases({"batch_size": 4, "data": {"batch_size": 8}}, [], TRAINER_SECTION_ALIASES)
    # disjoint keys of one section under both names merge
    merged, _ = apply_key_aliases({"train": {"lr": 1.0}, "trainer": {"seed": 2}}, [], TRAINER_SECTION_ALIASES)
    assert merged == {"trainer": {"lr": 1.0, "seed": 2}}


def test_the_three_training_configs_accept_the_shared_spellings():
    from crysgen.config import load_train_config
    from graphgen.diffusion import GraphGenConfig
    from molgen.train import GeneratorTrainConfig
    from shared.config import load_config

    reverse = {canonical: alias for alias, canonical in TRAINER_SECTION_ALIASES.items()}
    g = load_config(GraphGenConfig, {"data": {"name": "QM9"}}, ["trainer.lr=0.01", "batch_size=16"], aliases=reverse)
    assert g.train.lr == 0.01 and g.data.batch_size == 16
    m = load_config(GeneratorTrainConfig, {}, ["train.lr=0.01", "data.batch_size=16"], aliases=TRAINER_SECTION_ALIASES)
    assert m.trainer.lr == 0.01 and m.batch_size == 16
    c = load_train_config({"data": {"batch_size": 16}, "train": {"lr": 0.01}})
    assert c.trainer.lr == 0.01 and c.batch_size == 16
