"""Property conditioning: the five embeddings, Gaussian expansion, absent properties, normalisation."""

from __future__ import annotations

import pytest
import torch

from molgen.conditioning import EMBEDDINGS, ConditionEmbedding, ConditioningConfig, make_condition, null_condition


def _embedding(mode: str, expansion: bool = False, where: str = "input") -> ConditionEmbedding:
    torch.manual_seed(0)
    config = ConditioningConfig(properties=["gap", "mu"], embedding=mode, gaussian_expansion=expansion, where=where)
    emb = ConditionEmbedding(config, scalars=8, num_merges=3)
    with torch.no_grad():  # a non-zero "unknown" vector, so absent properties are visible in the output
        emb.unknown.normal_()
    return emb


@pytest.mark.parametrize("mode", EMBEDDINGS)
@pytest.mark.parametrize("expansion", [False, True])
def test_each_embedding_merges_and_uses_the_value(mode, expansion):
    emb = _embedding(mode, expansion)
    h = torch.randn(5, 8)
    cond = {"values": torch.tensor([[0.5, -1.0]]), "present": torch.tensor([[1.0, 1.0]])}
    c = emb(cond, 1, torch.float32, "cpu").expand(5, -1)
    merged = emb.combine(h, c)
    assert merged.shape == h.shape and torch.isfinite(merged).all()
    other = emb({"values": torch.tensor([[2.0, -1.0]]), "present": cond["present"]}, 1, torch.float32, "cpu")
    assert not torch.allclose(emb.combine(h, other.expand(5, -1)), merged)  # the value matters


def test_embeddings_follow_their_names():
    h, c = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.equal(_embedding("sum").combine(h, c), h + c)
    assert torch.equal(_embedding("multiply").combine(h, c), h * c)
    cat = _embedding("concatenate")
    w = cat.merge[0](torch.cat([h, c], -1))
    assert torch.allclose(cat.combine(h, c), w)
    for mode, expected in (("concatenate_sum", h + w), ("concatenate_multiply", h * w)):
        emb = _embedding(mode)
        emb.merge[0].load_state_dict(cat.merge[0].state_dict())
        assert torch.allclose(emb.combine(h, c), expected)
    # concatenate_multiply is not an alias of multiply
    assert not torch.allclose(_embedding("concatenate_multiply").combine(h, c), h * c)


def test_every_layer_has_its_own_merge():
    emb = _embedding("concatenate", where="every_layer")
    h, c = torch.randn(3, 8), torch.randn(3, 8)
    assert len(emb.merge) == 3
    assert not torch.allclose(emb.combine(h, c, layer=0), emb.combine(h, c, layer=1))


def test_absent_properties_hide_their_values():
    emb = _embedding("sum")
    present = torch.tensor([[1.0, 0.0]])
    a = emb({"values": torch.tensor([[0.3, 5.0]]), "present": present}, 1, torch.float32, "cpu")
    b = emb({"values": torch.tensor([[0.3, -9.0]]), "present": present}, 1, torch.float32, "cpu")
    assert torch.equal(a, b)
    null = emb(null_condition(1, 2), 1, torch.float32, "cpu")
    assert torch.allclose(null, emb(None, 1, torch.float32, "cpu"))
    assert torch.allclose(null, emb.unknown.sum(0, keepdim=True))
    with pytest.raises(ValueError, match="shape"):
        emb({"values": torch.zeros(2, 3), "present": torch.zeros(2, 3)}, 2, torch.float32, "cpu")


def test_make_condition_normalises_raw_units():
    emb = _embedding("sum")
    emb.set_normalisation(torch.tensor([6.0, 2.5]), torch.tensor([1.5, 1.0]))
    cond = make_condition({"gap": 7.5}, ["gap", "mu"], 3, emb)
    assert cond["values"].shape == (3, 2)
    torch.testing.assert_close(cond["values"][:, 0], torch.ones(3))
    assert cond["present"].tolist() == [[1.0, 0.0]] * 3 and cond["values"][:, 1].eq(0).all()
    torch.testing.assert_close(emb.denormalise(torch.tensor([1.0, 0.0])), torch.tensor([7.5, 2.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="not conditioned"):
        make_condition({"alpha": 1.0}, ["gap", "mu"], 1, emb)
    with pytest.raises(ValueError, match="positive"):
        emb.set_normalisation(torch.zeros(2), torch.tensor([1.0, 0.0]))


def test_config_validation():
    with pytest.raises(ValueError, match="embedding"):
        ConditioningConfig(properties=["gap"], embedding="add")
    with pytest.raises(ValueError, match="where"):
        ConditioningConfig(properties=["gap"], where="middle")
    with pytest.raises(ValueError, match="duplicates"):
        ConditioningConfig(properties=["gap", "gap"])
