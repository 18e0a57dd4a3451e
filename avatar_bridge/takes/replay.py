"""Replay a take at its original timing into sinks: the bus (``ReplayBus``, a small stand-in for
the daemon's sockets) so every subscriber treats it as live, and/or adapters' ``send`` directly.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from avatar_bridge.bus.sockets import BusConfig, BusPublisher, ControlServer
from avatar_bridge.takes.format import TakeFrame
from avatar_bridge.types import FaceState

Sink = Callable[[FaceState], Any]

_POSITION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*$")


class ReplayError(ValueError):
    """A replay range or option that cannot be honoured; the text says what is accepted."""


@dataclass(frozen=True)
class TakePosition:
    """A point in a take: ``value`` seconds from its first frame, or a frame index when ``frames``."""

    value: float
    frames: bool = False

    @staticmethod
    def parse(text: str) -> "TakePosition":
        """"2.5" or "2.5s" is seconds from the start; "150f" is frame 150 (0-based)."""
        m = _POSITION.match(text)
        if not m or (m.group(2) == "f" and "." in m.group(1)):
            raise ReplayError(f"cannot read position {text!r}; use seconds like 2.5 or 2.5s, or a frame like 150f")
        return TakePosition(float(m.group(1)), frames=m.group(2) == "f")

    def index(self, times: np.ndarray) -> int:
        """The first frame at or after this position (len(times) if past the end)."""
        if self.frames:
            return min(int(self.value), len(times))
        return int(np.searchsorted(times - times[0], self.value - 1e-9, side="left")) if len(times) else 0


def select_frames(frames: Sequence[TakeFrame], start: TakePosition | None = None,
                  end: TakePosition | None = None) -> list[TakeFrame]:
    """Frames in [start, end): half-open, so ``--from 2s --to 4s`` then ``--from 4s`` splits a take cleanly."""
    times = np.array([f.t for f in frames], np.float64)
    a = start.index(times) if start else 0
    b = end.index(times) if end else len(frames)
    if a >= b:
        raise ReplayError(f"the range selects no frames (frames {a} to {b} of {len(frames)}, "
                          f"{times[-1] - times[0] if len(times) else 0:.2f} s); check --from/--to")
    return list(frames[a:b])


@dataclass(frozen=True)
class ReplayConfig:
    speed: float = 1.0            # 2.0 plays twice as fast
    loop: bool = False            # start again after the last frame, until stopped
    # A pause longer than this between two frames (the recorder left running while the daemon was
    # stopped, or a crafted time) is played as one frame interval, so a replay never waits for hours.
    max_gap_s: float = 10.0


@dataclass
class ReplaySummary:
    frames_sent: int = 0
    gaps_shortened: int = 0       # pauses longer than max_gap_s (or times going back) played as one interval
    passes: int = 0
    late: int = 0                 # frames sent more than one frame interval after their time
    max_late_s: float = 0.0
    duration_s: float = 0.0


class Replayer:
    """Sends frames to every sink at their recorded spacing (divided by ``speed``). A frame that is
    due late is sent at once, never skipped; ``t_capture``/``t_publish`` are restamped to now."""

    def __init__(self, frames: Sequence[TakeFrame], config: ReplayConfig, sinks: Sequence[Sink]) -> None:
        if not frames:
            raise ReplayError("the take has no frames to replay")
        if not (math.isfinite(config.speed) and 0 < config.speed <= 1000):
            raise ReplayError(f"--speed must be a number above 0 and at most 1000, got {config.speed}")
        if not (math.isfinite(config.max_gap_s) and config.max_gap_s > 0):
            raise ReplayError(f"--max-gap must be a number of seconds above 0, got {config.max_gap_s}")
        self.frames = list(frames)
        self.config = config
        self.sinks = list(sinks)
        times = np.array([f.t for f in self.frames], np.float64)
        steps = np.diff(times)
        regular = (steps >= 0) & (steps <= config.max_gap_s)
        moving = steps[regular & (steps > 0)]
        self.frame_interval = float(np.median(moving)) if len(moving) else 1 / 60
        self.summary = ReplaySummary(gaps_shortened=int(np.sum(~regular)))
        self._offsets = np.concatenate([[0.0], np.cumsum(np.where(regular, steps, self.frame_interval))])

    @property
    def duration_s(self) -> float:
        """Seconds of take one pass plays (before ``speed``), long pauses shortened."""
        return float(self._offsets[-1])

    def run(self, stop: threading.Event | None = None, idle: Callable[[], None] | None = None) -> ReplaySummary:
        """Play until the end (or forever with ``loop``) or until ``stop`` is set. ``idle`` is called
        at least every 20 ms while waiting, e.g. to serve a control socket."""
        stop = stop or threading.Event()
        pass_len = self._offsets[-1] + self.frame_interval
        start = time.monotonic()
        tolerance = self.frame_interval / self.config.speed
        s = self.summary
        while not stop.is_set():
            base = start + s.passes * pass_len / self.config.speed
            for frame, offset in zip(self.frames, self._offsets):
                due = base + offset / self.config.speed
                if not self._wait_until(due, stop, idle):
                    break
                now = time.monotonic()
                late = now - due
                if late > tolerance:
                    s.late += 1
                s.max_late_s = max(s.max_late_s, late)
                state = replace(frame.state, t_capture=due, t_publish=now)
                for sink in self.sinks:
                    sink(state)
                s.frames_sent += 1
            else:
                s.passes += 1
                if self.config.loop:
                    continue
            break
        s.duration_s = time.monotonic() - start
        return s

    @staticmethod
    def _wait_until(due: float, stop: threading.Event, idle: Callable[[], None] | None) -> bool:
        while True:
            if stop.is_set():
                return False
            left = due - time.monotonic()
            if left <= 0:
                return True
            if idle is not None:
                idle()
                left = due - time.monotonic()
                if left <= 0:
                    return True
            time.sleep(min(left, 0.02))


class ReplayBus:
    """The daemon's side of the bus during a replay: the face topic every subscriber reads as live,
    ``status`` at 1 Hz, and a control socket answering ``status`` and ``ping`` like the daemon's,
    so ``listen``, ``doctor`` and the engine plugins work against a replay unchanged."""

    def __init__(self, config: BusConfig, source: str, fps: float) -> None:
        self.source, self.fps = source, fps
        self.publisher = BusPublisher(config)
        try:
            self.control = ControlServer(config, {"status": lambda req: self.status(),
                                                  "ping": lambda req: {"pong": True}})
        except Exception:
            self.publisher.close()
            raise
        self._next_status = 0.0

    def status(self) -> dict[str, Any]:
        return {"source": self.source, "fps": self.fps, "frames_published": self.publisher.seq, "replay": True}

    def publish_face(self, state: FaceState) -> None:
        self.publisher.publish_face(state)

    def idle(self) -> None:
        """Serve control requests and the status topic between frames."""
        self.control.poll_once(0)
        if time.monotonic() >= self._next_status:
            self.publisher.publish_status(self.status())
            self._next_status = time.monotonic() + 1.0

    def close(self) -> None:
        self.control.close()
        self.publisher.close()
