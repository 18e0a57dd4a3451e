"""Every adapter by name: one list that ``run``, ``replay``, ``bridge``, ``doctor`` and their
``--help`` read, in the model registry's style (name -> factory, ``list_adapters()``,
``create_adapter(name, options)``). Adding a protocol: declare ``ADAPTER = AdapterEntry(...)`` in
its module and add that module here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any

from avatar_bridge.adapters.runner import Adapter


@dataclass(frozen=True)
class AdapterEntry:
    """One protocol: its config and sender classes and the words the CLI shows for it. Each adapter
    module declares its own as ``ADAPTER``."""

    name: str
    config: type
    sender: type
    summary: str         # the run/replay flag's help
    receiver_hint: str   # doctor's fix when nothing listens ({port} is filled in)


# name -> the module that declares it, in the order the CLI shows them.
_MODULES: dict[str, str] = {
    "vmc": "avatar_bridge.adapters.vmc",
    "vrchat": "avatar_bridge.adapters.vrchat",
    "livelink": "avatar_bridge.adapters.live_link_face",
    "ifacialmocap": "avatar_bridge.adapters.ifacialmocap",
}


def list_adapters() -> list[str]:
    """The adapter names, in the order the CLI shows them."""
    return list(_MODULES)


def adapter_entry(name: str) -> AdapterEntry:
    if name not in _MODULES:
        raise ValueError(f"unknown adapter {name!r}; choose from {', '.join(_MODULES)}")
    entry = importlib.import_module(_MODULES[name]).ADAPTER
    assert entry.name == name, (entry.name, name)
    return entry


def make_config(name: str, options: dict[str, Any] | None = None):
    """The adapter's config dataclass from a plain dict; unknown keys are an error naming the valid ones."""
    config_cls = adapter_entry(name).config
    options = {k: v for k, v in (options or {}).items() if v is not None}
    valid = {f.name for f in fields(config_cls)}
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")
    for key in ("port", "listen_port"):
        value = options.get(key)
        if value is not None and not (0 <= int(value) <= 65535):
            raise ValueError(f"{name}: {key} {value} is not a UDP port (0-65535)")
    if options.get("rate_hz") is not None and float(options["rate_hz"]) < 0:
        raise ValueError(f"{name}: rate must be 0 (unlimited) or more frames per second")
    return config_cls(**options)


def create_adapter(name: str, options: dict[str, Any] | None = None) -> Adapter:
    """One adapter by name ("vmc", "vrchat", "livelink", "ifacialmocap") with config options as a dict."""
    return adapter_entry(name).sender(make_config(name, options))


def create_adapters(names: list[str], options: dict[str, dict[str, Any]] | None = None) -> list[Adapter]:
    """Adapters by name; ``options`` maps a name to its config fields, e.g. {"vmc": {"port": 39540}}."""
    options = options or {}
    return [create_adapter(n, options.get(n)) for n in names]
