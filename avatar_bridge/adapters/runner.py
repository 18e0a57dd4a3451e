"""Run adapters as bus subscribers: ``build_adapters`` makes them by name, ``AdapterThread`` feeds one."""

from __future__ import annotations

import logging
import threading
from dataclasses import fields
from typing import Any, Protocol

import zmq

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import DEFAULT_PUB, BusSubscriber
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)


class Adapter(Protocol):
    name: str

    def send(self, state: FaceState) -> None: ...
    def stats(self) -> dict: ...
    def close(self) -> None: ...


def _registry() -> dict[str, tuple[type, type]]:
    from avatar_bridge.adapters.ifacialmocap import IFacialMocapConfig, IFacialMocapSender
    from avatar_bridge.adapters.live_link_face import LiveLinkFaceConfig, LiveLinkFaceSender
    from avatar_bridge.adapters.vmc import VmcConfig, VmcSender
    from avatar_bridge.adapters.vrchat import VrchatConfig, VrchatSender
    return {"vmc": (VmcConfig, VmcSender), "vrchat": (VrchatConfig, VrchatSender),
            "livelink": (LiveLinkFaceConfig, LiveLinkFaceSender),
            "ifacialmocap": (IFacialMocapConfig, IFacialMocapSender)}


ADAPTER_NAMES = ("vmc", "vrchat", "livelink", "ifacialmocap")


def adapter_config_class(name: str) -> type:
    """The config dataclass of the adapter called ``name`` (for checking a config file's table)."""
    return _registry()[name][0]


def make_config(name: str, options: dict[str, Any] | None = None):
    """The adapter's config dataclass from a plain dict; unknown keys are an error naming the valid ones."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown adapter {name!r}; choose from {', '.join(ADAPTER_NAMES)}")
    config_cls = registry[name][0]
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


def build_adapter(name: str, options: dict[str, Any] | None = None) -> Adapter:
    """One adapter by name ("vmc", "vrchat", "livelink", "ifacialmocap") with config options as a dict."""
    config = make_config(name, options)
    return _registry()[name][1](config)


def build_adapters(names: list[str], options: dict[str, dict[str, Any]] | None = None) -> list[Adapter]:
    """Adapters by name; ``options`` maps a name to its config fields, e.g. {"vmc": {"port": 39540}}."""
    options = options or {}
    return [build_adapter(n, options.get(n)) for n in names]


class AdapterThread(threading.Thread):
    """Subscribes to the bus's ``face`` topic and calls ``adapter.send`` for each FaceState until
    ``stop()``. Malformed messages are counted and logged, never fatal; the adapter is closed on exit."""

    def __init__(self, adapter: Adapter, bus_endpoint: str = DEFAULT_PUB,
                 context: zmq.Context | None = None, poll_ms: int = 100) -> None:
        super().__init__(name=f"adapter-{adapter.name}", daemon=True)
        self.adapter, self.bus_endpoint, self.poll_ms = adapter, bus_endpoint, poll_ms
        self._context = context
        self._stop_event = threading.Event()
        self.received = self.malformed = self.adapter_errors = 0

    def stop(self, timeout: float | None = 2.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def stats(self) -> dict:
        return {**self.adapter.stats(), "received": self.received, "malformed": self.malformed,
                "adapter_errors": self.adapter_errors}

    def run(self) -> None:
        sub = BusSubscriber(self.bus_endpoint, context=self._context)
        try:
            while not self._stop_event.is_set():
                got = sub.recv(self.poll_ms)
                if got is None:
                    continue
                topic, payload = got
                if topic != wire.TOPIC_FACE:
                    continue
                try:
                    _, state = wire.decode_face(payload)
                except wire.WireError as exc:
                    self.malformed += 1
                    if self.malformed == 1 or self.malformed % 1000 == 0:
                        log.warning("%s: ignored %d malformed bus message(s); latest: %s",
                                    self.adapter.name, self.malformed, exc)
                    continue
                self.received += 1
                try:
                    self.adapter.send(state)
                except Exception:  # an adapter bug must not take the daemon down; count and log it
                    self.adapter_errors += 1
                    if self.adapter_errors == 1 or self.adapter_errors % 1000 == 0:
                        log.exception("%s: adapter failed on a frame (%d so far)", self.adapter.name,
                                      self.adapter_errors)
        finally:
            sub.close()
            self.adapter.close()
