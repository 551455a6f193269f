"""Typed configs: nested dataclasses loaded from YAML with ``a.b=value`` overrides and strict validation.

``load_config(TrainConfig, "run.yaml", overrides=["trainer.lr=3e-4"])`` reads the file, applies the overrides
(values parsed as YAML, so ``x=[1, 2]`` is a list and ``x=null`` is None), then builds the dataclass, checking
every key and type. Mistakes raise :class:`ConfigError` naming the key path.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from shared.io import atomic_write_text

__all__ = ["ConfigError", "TRAINER_SECTION_ALIASES", "apply_key_aliases", "apply_overrides", "config_from_dict",
           "config_to_dict", "load_config", "save_config"]

# One vocabulary of training-config keys across the domains: the optimisation settings live under ``trainer:``
# and the batch size at the top level (``batch_size``). graphgen's configs keep GDSS's layout (``train:``,
# ``data.batch_size``) and read the shared spellings through the reverse of this map.
TRAINER_SECTION_ALIASES = {"train": "trainer", "data.batch_size": "batch_size"}

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, dict or override does not match its dataclass."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 demands a dot: ``1.0e-3``)."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_Loader.yaml_implicit_resolvers = copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML: {err}") from err


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"{path}: a binary file (NUL byte at offset {nul}), not a YAML config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte offset {err.start}); is it a YAML config?") \
            from None


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """A copy of ``data`` with each ``"a.b.c=value"`` set (value parsed as a YAML scalar or list)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p or not p.isidentifier() for p in parts):
            raise ConfigError(f"bad override {item!r}: expected 'dotted.key=value' with identifier keys")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"bad override {item!r}: {prefix} holds a {type(child).__name__}, not a section")
            node = child
        node[parts[-1]] = _parse_yaml(raw, f"override {item!r}") if raw.strip() else ""
    return data


def apply_key_aliases(data: dict, overrides: Sequence[str], aliases: Mapping[str, str] | None
                      ) -> tuple[dict, list[str]]:
    """``data`` and ``overrides`` with every alias key (dotted, e.g. ``"trainer"`` or ``"batch_size"``) moved to
    its canonical place (e.g. ``"train"``, ``"data.batch_size"``), so the domains share one vocabulary of YAML
    keys while each keeps its dataclass layout. Giving a setting under both spellings is an error."""
    if not aliases:
        return data, list(overrides)
    data = copy.deepcopy(data)
    for alias, canonical in aliases.items():
        *alias_parents, alias_leaf = alias.split(".")
        node = data
        for part in alias_parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or alias_leaf not in node:
            continue
        value = node.pop(alias_leaf)
        *parents, leaf = canonical.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{alias!r} is spelled {canonical!r} here, but {part!r} is not a section")
        if leaf in target:
            if isinstance(value, dict) and isinstance(target[leaf], dict) and not set(value) & set(target[leaf]):
                target[leaf] = {**target[leaf], **value}
                continue
            raise ConfigError(f"config gives {canonical!r} twice: as {canonical!r} and as its alias {alias!r}")
        target[leaf] = value
    renamed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        for alias, canonical in aliases.items():
            if key.strip() == alias or key.strip().startswith(alias + "."):
                key = canonical + key.strip()[len(alias):]
                break
        renamed.append(key + sep + raw)
    return data, renamed


def load_config(cls: type[T], source: str | os.PathLike | dict | None = None,
                overrides: Sequence[str] = (), aliases: Mapping[str, str] | None = None) -> T:
    """Build dataclass ``cls`` from a YAML file or dict (None: all defaults) plus dotted-key overrides;
    ``aliases`` maps other spellings of keys to ``cls``'s (see :func:`apply_key_aliases`)."""
    if source is None:
        data: Any = {}
    elif isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = _parse_yaml(_read_text(path), str(path))
        if data is None:  # an empty or comment-only file is a truncated copy far more often than a wish for defaults
            raise ConfigError(f"{path}: holds no settings (empty or only comments); write {{}} for all defaults")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    data, overrides = apply_key_aliases(data, overrides, aliases)
    return config_from_dict(cls, apply_overrides(data, overrides))


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(cls: type[T], data: dict, path: str = "") -> T:
    """Validate ``data`` against dataclass ``cls`` (recursively) and build it."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = _join(path, str(unknown[0]))
        raise ConfigError(f"unknown key {where!r}; valid keys of {path or cls.__name__}: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in data:
            value = data[name]
            if isinstance(value, dict) and field.default_factory is not dataclasses.MISSING:
                # a partial section overrides the factory's defaults, it does not replace them
                default = field.default_factory()
                if dataclasses.is_dataclass(default) and not isinstance(default, type):
                    value = _deep_merge(config_to_dict(default), value)
            kwargs[name] = _coerce(value, hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # __post_init__ checks of the dataclass itself
        message = str(err)
        if not (path and message.startswith(f"{path}.")):  # "data.origin must ..." already names its place
            message = f"{path or cls.__name__}: {message}"
        raise ConfigError(message) from err


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_args(tp):  # list[int], dict[str, float], Literal[...]: str() spells these out
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked (and converted where lossless: int->float, list->tuple) against annotation ``tp``."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return config_from_dict(tp, value, key)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        key_tp, val_tp = args if args else (Any, Any)
        return {_coerce(k, key_tp, f"{key}.<key>"): _coerce(v, val_tp, _join(key, str(k))) for k, v in value.items()}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def config_to_dict(cfg: Any) -> Any:
    """Plain YAML/JSON-friendly data (dicts, lists, scalars) from a (nested) dataclass."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    return cfg


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write ``cfg`` (a dataclass or dict) as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    return atomic_write_text(path, text)
