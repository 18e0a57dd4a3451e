"""The skeleton every adapter shares: rate gate -> encode -> send, stats, close.

An adapter is a frozen config plus a pure encoder (``FaceState`` -> packets); ``UdpSender`` owns
everything around it: the frame-rate gate, the UDP target (and moving it when a receiver is found
elsewhere), the counters ``stats()`` reports, the background threads some protocols need (a
handshake or avatar-change listener) and closing all of it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from avatar_bridge.adapters.udp import RateGate, UdpTarget
from avatar_bridge.types import FaceState


class UdpSender:
    """Base for adapters: subclasses set ``name`` and implement ``encode``; nothing else per frame."""

    name = "udp"

    def __init__(self, host: str, port: int, rate_hz: float, logger: logging.Logger) -> None:
        self.log = logger
        self.udp = UdpTarget(self.name, host, port, logger)
        self.gate = RateGate(rate_hz)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Held while swapping the target and by encoders with state a listener thread changes.
        self.lock = threading.Lock()

    def encode(self, state: FaceState, now: float) -> list[bytes]:
        """The packets for one frame, in order; ``now`` is ``time.monotonic()`` at the gate."""
        raise NotImplementedError

    def send(self, state: FaceState) -> None:
        now = time.monotonic()
        if not self.gate.allow(now):
            return
        packets = self.encode(state, now)
        with self.lock:
            udp = self.udp
        for packet in packets:
            if not udp.send(packet):
                break  # one failure per frame is enough; the next frame retries

    def retarget(self, host: str, port: int) -> None:
        """Send to ``host:port`` from the next frame on (a handshake or a discovery found the receiver)."""
        with self.lock:
            old, self.udp = self.udp, UdpTarget(self.name, host, port, self.log)
        old.close()

    def extra_stats(self) -> dict:
        """Protocol-specific counters added to ``stats()``."""
        return {}

    def stats(self) -> dict:
        return {**self.udp.stats(), "dropped_rate": self.gate.dropped, **self.extra_stats()}

    def spawn(self, target: Callable, *args, name: str) -> None:
        """Run ``target(*args)`` on a daemon thread that ``close()`` waits for; it should return soon
        after ``self.stopping`` is set."""
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._threads.append(thread)
        thread.start()

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self.udp.close()
