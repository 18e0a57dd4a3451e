"""Loading ``--config FILE.toml`` into the components' config dataclasses.

The file has one table per component, named like the dataclass fields of DaemonConfig, e.g.::

    [source]
    spec = "camera:0"
    [bus]
    pub_endpoint = "tcp://127.0.0.1:5570"

Command-line flags that were actually given override the file; the file overrides the defaults.
Every value is checked against its field's type and range before anything starts, with a one-line
error naming the key, so a typo or a wrong type never silently does something else.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable


class ConfigError(ValueError):
    """A config file (or flag) that cannot be read, names an unknown key or holds a wrong value."""


def read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a .toml file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


# Ranges by dotted key (fnmatch patterns, first match wins). Numbers with no rule must be finite and >= 0:
# no field of any component takes a negative number.
_Range = tuple[Callable[[float], bool], str]
RANGES: list[tuple[str, _Range]] = [
    ("*port", (lambda v: 0 <= v <= 65535, "a port number (0-65535)")),
    ("status_hz", (lambda v: v > 0, "a positive number of status messages per second")),
    ("max_frames", (lambda v: v >= 1, "a number of frames, at least 1")),
    ("source.fps", (lambda v: v > 0, "a positive frame rate")),
    ("source.width", (lambda v: v >= 1, "a width in pixels, at least 1")),
    ("source.height", (lambda v: v >= 1, "a height in pixels, at least 1")),
    ("pipeline.tracker.crop_size", (lambda v: 16 <= v <= 1024, "a crop size in pixels (16-1024)")),
    ("pipeline.tracker.*", (lambda v: 0 <= v <= 1, "a number from 0 to 1")),
    ("signal.wink_threshold", (lambda v: 0 <= v <= 1, "a number from 0 to 1")),
    ("signal.*.min_cutoff", (lambda v: v > 0, "a positive cutoff in Hz")),
    ("signal.*.d_cutoff", (lambda v: v > 0, "a positive cutoff in Hz")),
    ("adapters.*.frame_rate", (lambda v: v >= 1, "a frame rate, at least 1")),
]
_ANY_NUMBER: _Range = (lambda v: v >= 0, "a number, 0 or more")


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def check_value(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against type ``tp`` (from a dataclass annotation) and the range of ``key``;
    returns it in the field's own type (an int where a float is wanted becomes a float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if value is None and len(kinds) < len(args):
            return None
        for kind in kinds:
            try:
                return check_value(key, value, kind)
            except ConfigError:
                if len(kinds) == 1:
                    raise
        raise ConfigError(f"{key} must be one of {', '.join(_type_name(k) for k in kinds)}, not {_shown(value)}")
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {_shown(value)}")
        return value
    if tp in (int, float):
        # bool is an int in Python, but `port = true` is a mistake, not 1.
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{key} must be {_type_name(tp)}, not {_shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, not {value}")
        test, what = next((r for pattern, r in RANGES if fnmatch.fnmatchcase(key, pattern)), _ANY_NUMBER)
        if not test(value):
            raise ConfigError(f"{key} must be {what}, not {_shown(value)}")
        return float(value) if tp is float else value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {_shown(value)}")
        return value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, not {_shown(value)}")
        item = args[0] if args else Any
        return tuple(check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, not {_shown(value)}")
        value_type = args[1] if len(args) == 2 else Any
        return {k: check_value(f"{key}.{k}", v, value_type) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, not {_shown(value)}")
        return build(tp, value, f"{key}.")
    return value


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) mapping, checking every value; a nested table fills the
    fields it names and keeps the defaults of the others."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where.rstrip('.') or 'the config'} must be a table, not {_shown(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {where}{key}; known: {', '.join(sorted(fields))}")
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[key] = build(type(default), {**_fields_of(default), **value}, f"{where}{key}.")
        elif key == "adapters" and cls.__name__ == "DaemonConfig":
            kwargs[key] = _check_adapters(value, f"{where}{key}")
        else:
            kwargs[key] = check_value(f"{where}{key}", value, hints[key])
    return cls(**kwargs)


def _fields_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _check_adapters(value: Any, key: str) -> dict[str, dict[str, Any]]:
    """Each ``[adapters.NAME]`` table checked against that adapter's own config dataclass, so an adapter
    never starts with a host that is a number or a port of 39539.7."""
    from avatar_bridge.adapters.registry import adapter_entry, list_adapters

    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table of adapter tables, e.g. [adapters.vmc], not {_shown(value)}")
    out = {}
    for name, options in value.items():
        if name not in list_adapters():
            raise ConfigError(f"unknown adapter {key}.{name}; choose from {', '.join(list_adapters())}")
        if not isinstance(options, dict):
            raise ConfigError(f"{key}.{name} must be a table (e.g. [adapters.{name}] with port = ...), "
                              f"not {_shown(options)}")
        build(adapter_entry(name).config, options, f"{key}.{name}.")   # raises on a bad field
        out[name] = dict(options)
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` (CLI flags that were given) over ``base`` (the file)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
