"""Named registries: the one way a domain declares its samplers, datasets and hooks.

A :class:`Registry` is a read-only mapping name -> item with ``register`` (also a decorator), ``unregister`` and
lookups whose error lists the known names. The CLIs take their ``choices`` from a registry, so registering an item
is all it takes to reach it from the command line.
"""

from __future__ import annotations

from typing import Generic, Iterator, Mapping, TypeVar

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has (a KeyError for mappings, a ValueError for callers checking input)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """``kind`` names the items in messages ("graphgen sampler", "dataset", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None, *, replace: bool = False):
        """``register(name, item)``, or ``@register(name)`` above a function or class; returns the item."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")

        def add(value: T) -> T:
            if name in self._items and not replace:
                raise ValueError(f"a {self.kind} named {name!r} is already registered (replace=True overrides it)")
            self._items[name] = value
            return value

        return add if item is None else add(item)

    def unregister(self, name: str) -> T:
        return self._items.pop(name)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose from {', '.join(self._items)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
