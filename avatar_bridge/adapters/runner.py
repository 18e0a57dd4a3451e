"""Run adapters as bus subscribers: ``AdapterThread`` feeds one (registry.py makes them by name)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import zmq

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import DEFAULT_PUB, BusSubscriber
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)


class Adapter(Protocol):
    """What AdapterThread drives; sender.UdpSender implements it for every protocol."""

    name: str

    def send(self, state: FaceState) -> None: ...
    def stats(self) -> dict: ...
    def close(self) -> None: ...


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
