"""shared.registry: registration, replacement, lookups that list the known names, mapping behaviour."""

import pytest

from shared.registry import Registry, UnknownName


def test_register_lookup_and_errors():
    reg = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def make_b():
        return 2

    assert list(reg) == ["a", "b"] and len(reg) == 2 and reg["b"] is make_b and "a" in reg
    assert reg.get("zzz") is None and dict(reg) == {"a": 1, "b": make_b}
    with pytest.raises(ValueError, match="unknown widget 'c'; choose from a, b"):
        reg["c"]
    with pytest.raises(KeyError):
        reg["c"]
    assert str(UnknownName("x y")) == "x y"
    with pytest.raises(ValueError, match="a widget named 'a' is already registered"):
        reg.register("a", 3)
    reg.register("a", 3, replace=True)
    assert reg["a"] == 3 and reg.unregister("a") == 3 and list(reg) == ["b"]
    with pytest.raises(ValueError, match="non-empty name"):
        reg.register("", 4)
