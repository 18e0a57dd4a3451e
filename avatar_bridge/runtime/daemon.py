"""The daemon: capture thread -> latest-frame slot -> pipeline -> bus, plus status and control.

Capture and processing are decoupled: the capture thread overwrites a one-frame slot, so a slow
pipeline skips stale frames (counted as dropped) instead of building a queue of old faces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar_bridge import __version__
from avatar_bridge.adapters.registry import create_adapters
from avatar_bridge.adapters.runner import AdapterThread
from avatar_bridge.bus.sockets import BusConfig, BusPublisher, ControlServer, local_endpoint
from avatar_bridge.signal.calibration import calibration_handlers
from avatar_bridge.signal.tuning import signal_settings, tuning_handlers
from avatar_bridge.runtime.camera_view import CameraView, CameraViewConfig
from avatar_bridge.runtime.external_head import ExternalHead
from avatar_bridge.runtime.pipeline import Pipeline, PipelineConfig
from avatar_bridge.runtime.texture import TextureConfig, TextureThread, open_texture
from avatar_bridge.signal.profile import default_profile_dir, load_or_default
from avatar_bridge.takes.recorder import RecordingControl, default_take_dir
from avatar_bridge.signal.chain import SignalChain, SignalChainConfig
from avatar_bridge.tracking.sources import SourceConfig, open_source
from avatar_bridge.types import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    signal: SignalChainConfig = field(default_factory=SignalChainConfig)
    profile: str | None = None           # calibration profile name; None: 'default' if saved
    profile_dir: str | None = None       # None: the user's config directory
    # Protocol adapters to run beside the daemon, by name, with their config fields, e.g.
    # {"vmc": {"port": 39540}, "livelink": {}} (see avatar_bridge/adapters/runner.py).
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    texture: TextureConfig = field(default_factory=TextureConfig)   # generated face images (topic texture)
    status_hz: float = 1.0
    max_frames: int | None = None        # stop after this many processed frames (tests, bench)
    # Where record.start over the control socket writes (plain file names only); None: the user's data
    # directory, e.g. ~/.local/share/avatar-bridge/takes on Linux (recorder.default_take_dir).
    takes_dir: str | None = None


# Control requests served per pass of the frame loop: a client flooding the socket then slows its own
# replies, never the faces (the rest wait in ZeroMQ's queue for the next pass).
CONTROL_REQUESTS_PER_FRAME = 16


class FrameSlot:
    """Holds only the newest frame; ``put`` replaces an unread one and counts it as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None and not self.closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class _Stats:
    """Rolling per-stage timings and frame rate for the status topic."""

    def __init__(self, window: int = 120) -> None:
        self.timings: dict[str, deque[float]] = {}
        self.publish_times: deque[float] = deque(maxlen=window)
        self.window = window

    def add(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            self.timings.setdefault(k, deque(maxlen=self.window)).append(v)

    def fps(self) -> float:
        t = self.publish_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95))}
                for k, v in self.timings.items() if v}


class Daemon:
    """Runs until ``stop()`` (or SIGINT/SIGTERM via ``run_forever``), a finite source ends, or
    ``max_frames`` frames were published. Faults in a frame are logged and the loop goes on."""

    def __init__(self, config: DaemonConfig,
                 control_handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> None:
        self.config = config
        self._stop = threading.Event()
        profile_dir = Path(config.profile_dir) if config.profile_dir else default_profile_dir()
        self.chain = SignalChain(config.signal, load_or_default(config.profile, profile_dir))
        # Whatever was opened is closed again if a later part fails (a busy port, a bad adapter
        # setting), so a caller that handles the error is left with no camera, model or socket held.
        with contextlib.ExitStack() as undo:
            self.source = open_source(config.source)
            undo.callback(getattr(self.source, "close", lambda: None))     # a camera; files open lazily
            self.pipeline = Pipeline.create(config.pipeline, self.chain)
            undo.callback(self.pipeline.close)
            self.bus = BusPublisher(config.bus)
            undo.callback(self.bus.close)
            takes_dir = Path(config.takes_dir).expanduser() if config.takes_dir else default_take_dir()
            self.recording = RecordingControl(local_endpoint(config.bus.pub_endpoint), takes_dir, header_provider=lambda: {
                "source": config.source.spec, "fps": getattr(self.source, "fps", 30.0),
                "profile": self.chain.profile.to_toml_dict()})
            self.camera_view = CameraView(CameraViewConfig(), config.bus.control_endpoint)
            self.external_head = ExternalHead()   # an HMD's pose from engine_plugins/openvr (head.set)
            # Control requests are served from the frame loop's thread: the chain is not thread-safe.
            handlers = {"status": lambda req: self.status(), "ping": lambda req: {"pong": True},
                        **calibration_handlers(self.chain, profile_dir, self.chain.profile.name),
                        **self.recording.handlers(), **tuning_handlers(self.chain), **self.camera_view.handlers(),
                        **self.external_head.handlers()}
            handlers.update(control_handlers or {})
            self.control = ControlServer(config.bus, handlers)
            undo.callback(self.control.close)
            adapters = create_adapters(list(config.adapters), config.adapters)
            self.texture: TextureThread | None = None
            self.virtual_camera = None
            if config.texture.enabled:
                generator, self.virtual_camera = open_texture(config.texture, profile_dir, self.chain.profile.name)
                if self.virtual_camera is not None:
                    undo.callback(self.virtual_camera.close)
                self.texture = TextureThread(config.texture, generator,
                                             self.virtual_camera.send if self.virtual_camera else None)
            undo.pop_all()
        # Each adapter is its own bus subscriber thread, so a slow or failing one never blocks frames.
        self.adapter_threads = [AdapterThread(a, local_endpoint(config.bus.pub_endpoint)) for a in adapters]
        self.slot = FrameSlot()
        self.stats = _Stats()
        self.frames_in = 0
        self.frame_errors = 0
        self.faces = 0
        self.status_providers: dict[str, Callable[[], dict[str, Any]]] = {
            "adapters": lambda: {t.adapter.name: t.stats() for t in self.adapter_threads},
            "recorder": lambda: self.recording.status({}),
            "signal": lambda: signal_settings(self.chain),
            "head": self.external_head.status}
        if self.texture is not None:
            self.status_providers["texture"] = self.texture.stats
        # Called with each status map on the frame loop's thread (the CLI's live status line).
        self.status_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.started = time.monotonic()
        log.info("daemon: source %s, estimator %s", config.source.spec, self.pipeline.estimator.name)

    def stop(self) -> None:
        self._stop.set()
        stop_source = getattr(self.source, "stop", None)
        if stop_source:
            stop_source()

    def _capture(self) -> None:
        try:
            for frame in self.source.frames():
                if self._stop.is_set():
                    break
                self.frames_in += 1
                self.slot.put(frame)
        except Exception:  # a source fault must end capture, not the daemon; it is reported in status
            log.exception("capture failed")
        finally:
            self.slot.close()

    def status(self) -> dict[str, Any]:
        status = {
            "version": __version__,
            "source": self.config.source.spec,
            "estimator": self.pipeline.estimator.name,
            "headset": self.config.pipeline.headset_mode,
            "profile": self.chain.profile.name,
            "smoothing": self.chain.config.smoothing,   # signal.set may have changed it
            "calibration": self.config.signal.calibration,
            "uptime_s": time.monotonic() - self.started,
            "fps": self.stats.fps(),
            "frames_in": self.frames_in,
            "frames_published": self.bus.seq,
            "frames_with_face": self.faces,
            "dropped_frames": self.slot.dropped,
            "frame_errors": self.frame_errors,
            "control_errors": self.control.errors,
            "takes_dir": str(self.recording.take_dir),    # where record.start writes (docs/takes.md)
            "stages": self.stats.summary(),
        }
        for key, provider in self.status_providers.items():
            try:
                status[key] = provider()
            except Exception as exc:  # a broken provider must not take the status topic down
                status[key] = {"error": str(exc)}
        return status

    def run(self) -> None:
        """Process frames until stopped; always closes sockets and the tracker."""
        capture = threading.Thread(target=self._capture, name="capture", daemon=True)
        capture.start()
        for thread in self.adapter_threads:
            thread.start()
        if self.texture is not None:
            self.texture.start()
        next_status = time.monotonic()
        try:
            while not self._stop.is_set():
                for _ in range(CONTROL_REQUESTS_PER_FRAME):
                    if not self.control.poll_once(0):
                        break
                now = time.monotonic()
                if now >= next_status:
                    status = self.status()
                    self.bus.publish_status(status)
                    for listener in self.status_listeners:
                        listener(status)
                    next_status = now + 1.0 / self.config.status_hz
                self._send_texture()
                frame = self.slot.take(timeout=0.05 if self.texture is None else 0.01)
                if frame is None:
                    if self.slot.closed:
                        break
                    continue
                self._process(frame)
                if self.config.max_frames is not None and self.bus.seq >= self.config.max_frames:
                    break
        finally:
            self.stop()
            capture.join(timeout=2.0)
            self.close()

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        try:
            state, timings = self.pipeline.process(frame)
        except Exception:  # one bad frame (e.g. a corrupt decode) must not stop the stream
            self.frame_errors += 1
            log.exception("frame %d failed; skipping it", frame.index)
            return
        t1 = time.perf_counter()
        state = dataclasses.replace(self.external_head.apply(state), t_publish=time.monotonic())
        seq = self.bus.publish_face(state)
        if self.texture is not None and state.face_present:
            self.texture.offer(seq, state)
        timings["publish"] = (time.perf_counter() - t1) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        self.camera_view.keep(frame, self.pipeline.last_observation)
        self.faces += int(state.face_present)
        self.stats.add(timings)
        self.stats.publish_times.append(time.monotonic())

    def _send_texture(self) -> None:
        texture = self.texture.take() if self.texture is not None else None
        if texture is not None:   # sent here: the PUB socket belongs to this thread
            self.bus.publish_texture(texture.jpeg, texture.seq, texture.frame_index, texture.width, texture.height)

    def run_forever(self) -> None:
        """``run`` with SIGINT/SIGTERM/SIGHUP wired to a clean stop (main thread only): a closed terminal
        (SIGHUP) still leaves a recording in progress with its end record."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop())
        self.run()

    def close(self) -> None:
        self.recording.close()   # a take in progress gets its end record
        for thread in self.adapter_threads:
            thread.stop()
        if self.texture is not None:
            self.texture.stop()
        if self.virtual_camera is not None:
            self.virtual_camera.close()
        self.control.close()
        self.bus.close()
        self.pipeline.close()
