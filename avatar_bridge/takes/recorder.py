"""The recorder: a bus subscriber thread that appends every ``face`` message to a take file.

It stores each payload byte for byte as published, stamps it with its receive time (float64,
the recorder's monotonic clock) and counts gaps in ``seq``, so a summary can say whether anything
was missed on the bus. The daemon offers it over the control socket through ``RecordingControl``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import platformdirs
import zmq

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import DEFAULT_PUB
from avatar_bridge.takes.format import TAKE_SUFFIX, TakeError, TakeHeader, TakeWriter, TakeWriterConfig

log = logging.getLogger(__name__)


class RecordingError(RuntimeError):
    """A recording that cannot start or is not running; the text says what to do."""


# After stop, a gap this long on the bus means nothing more is in flight (loopback delivers in < 1 ms).
QUIET_S = 0.05
MAX_TAKE_NAME = 200


def connect_endpoint(endpoint: str) -> str:
    """The endpoint a local subscriber connects to for a bind endpoint (``*``/0.0.0.0 -> loopback)."""
    return endpoint.replace("//*:", "//127.0.0.1:").replace("//0.0.0.0:", "//127.0.0.1:")


@dataclass(frozen=True)
class RecorderConfig:
    path: str
    bus_endpoint: str = DEFAULT_PUB
    fps: float = 60.0                          # nominal rate for the header
    source: str = ""                           # header "source"; defaults to "bus <endpoint>"
    profile: dict[str, Any] | None = None      # calibration profile in force, for the header
    writer: TakeWriterConfig = field(default_factory=TakeWriterConfig)
    max_frames: int | None = None              # stop by itself after this many frames ...
    max_duration_s: float | None = None        # ... or this many seconds after the first frame


@dataclass
class RecordingSummary:
    """What a recording wrote and what it saw on the bus."""

    path: str
    frames: int = 0
    duration_s: float = 0.0
    gaps: int = 0              # messages missing between consecutive seqs
    gap_events: int = 0        # places where at least one was missing
    restarts: int = 0          # seq went backwards (the publisher restarted)
    malformed: int = 0         # messages that were not valid schema v1 (counted, not written)
    first_seq: int | None = None
    last_seq: int | None = None
    bytes: int = 0

    @property
    def fps(self) -> float:
        return (self.frames - 1) / self.duration_s if self.frames > 1 and self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fps": self.fps}

    def describe(self) -> str:
        line = f"wrote {self.frames} frames ({self.duration_s:.2f} s, {self.fps:.1f} fps) to {self.path}"
        if self.gaps:
            line += f"; {self.gap_events} sequence gap(s) on the bus, {self.gaps} message(s) missing"
        else:
            line += "; no sequence gaps"
        if self.restarts:
            line += f"; the publisher restarted {self.restarts} time(s)"
        if self.malformed:
            line += f"; {self.malformed} malformed message(s) skipped"
        return line


class Recorder:
    """Records the bus into a take from ``start()`` until ``stop()`` (or a frame/time limit)."""

    def __init__(self, config: RecorderConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self._ctx = context or zmq.Context.instance()
        header = TakeHeader(fps=config.fps, source=config.source or f"bus {config.bus_endpoint}",
                            profile=config.profile)
        self.writer = TakeWriter(config.path, header, config.writer)  # file errors surface here, in the caller
        self.summary = RecordingSummary(path=str(config.path))
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._drain_s = 0.1
        self._stop_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.started_at: float | None = None

    # --- control --------------------------------------------------------------------------------

    def start(self, connect_timeout_s: float = 2.0) -> "Recorder":
        """Start the thread; returns once connected to the publisher (or after ``connect_timeout_s``
        if no publisher is up yet; it connects as soon as one appears)."""
        self.started_at = time.monotonic()
        try:
            self._thread.start()
        except RuntimeError as exc:   # no thread to close the take: close it here
            self.writer.close({"incomplete": "the recorder thread could not start"})
            raise RecordingError(f"cannot start recording to {self.config.path}: {exc}") from None
        if self.connected.wait(connect_timeout_s):
            time.sleep(0.05)  # the subscription travels to the publisher just after the handshake
        return self

    def stop(self, drain_s: float = 0.1, timeout_s: float = 10.0) -> RecordingSummary:
        """Stop once what was already on its way has arrived (the bus quiet for QUIET_S), but at most
        ``drain_s`` after this call, so a stream that never pauses (a 30 fps daemon) still stops at
        once; close the take with its end record and return the summary."""
        self._drain_s = drain_s
        self._stop_at = time.monotonic()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.error is not None:
            raise RecordingError(f"recording to {self.config.path} failed: {self.error}") from self.error
        return self.summary

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the recording ends by itself (limit reached) or is stopped."""
        return self.finished.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        s = self.summary
        return {"recording": self.running, "path": s.path, "frames": s.frames, "duration_s": s.duration_s,
                "gaps": s.gaps, "malformed": s.malformed,
                "elapsed_s": time.monotonic() - self.started_at if self.started_at else 0.0}

    # --- thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        sock = monitor = None
        try:   # sockets are made inside: if the process is out of handles, the take is still closed
            sock = self._ctx.socket(zmq.SUB)
            # No receive limit: a recorder must not drop; it writes far faster than any camera delivers.
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_FACE)
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            sock.connect(connect_endpoint(self.config.bus_endpoint))
            quiet_since: float | None = None
            while True:
                events = dict(poller.poll(50))
                if monitor in events:
                    monitor.recv_multipart()
                    self.connected.set()
                got = False
                if sock in events:
                    got = self._drain(sock)
                self.writer.maybe_flush()
                if self._limit_reached():
                    break
                if self._stop.is_set():
                    now = time.monotonic()
                    quiet_since = now if got or quiet_since is None else quiet_since
                    if now - quiet_since >= QUIET_S or now - (self._stop_at or now) >= self._drain_s:
                        break
        except BaseException as exc:  # reported by stop(); the take keeps what was flushed
            log.exception("recorder failed")
            self.error = exc
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            if sock is not None:
                sock.close(linger=0)
            try:
                self.writer.close(self._end_summary())
                self.summary.bytes = self.writer.bytes_written
            except OSError as exc:
                self.error = self.error or exc
            self.finished.set()

    def _drain(self, sock: zmq.Socket) -> bool:
        got = False
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            got = True
            self._handle(parts, time.monotonic())
            if self._limit_reached():
                return got

    def _handle(self, parts: list[bytes], t: float) -> None:
        s = self.summary
        if len(parts) != 2:
            s.malformed += 1
            return
        try:
            seq = wire.decode_face_message(parts[1])["seq"]
        except wire.WireError as exc:
            s.malformed += 1
            if s.malformed <= 5:
                log.warning("recorder: skipping a malformed face message: %s", exc)
            return
        if s.last_seq is not None:
            if seq > s.last_seq + 1:
                s.gaps += seq - s.last_seq - 1
                s.gap_events += 1
            elif seq <= s.last_seq:
                s.restarts += 1
        else:
            s.first_seq = seq
        s.last_seq = seq
        self.writer.write_message(parts[1], t)
        s.frames = self.writer.frames
        s.duration_s = self.writer.duration_s

    def _limit_reached(self) -> bool:
        c, s = self.config, self.summary
        return ((c.max_frames is not None and s.frames >= c.max_frames)
                or (c.max_duration_s is not None and s.frames > 0 and s.duration_s >= c.max_duration_s))

    def _end_summary(self) -> dict[str, Any]:
        s = self.summary
        return {"gaps": s.gaps, "gap_events": s.gap_events, "restarts": s.restarts, "malformed": s.malformed,
                "first_seq": s.first_seq, "last_seq": s.last_seq}


def default_take_name() -> str:
    return _dt.datetime.now().strftime("take-%Y%m%d-%H%M%S") + TAKE_SUFFIX


def default_take_dir() -> Path:
    """Where the daemon's own recordings go for this user, e.g. ~/.local/share/avatar-bridge/takes."""
    return Path(platformdirs.user_data_dir("avatar-bridge")) / "takes"


def check_take_name(name: Any) -> str:
    """A take name from a control request: a plain file name, so a request can only ever create a file in
    the takes folder (no separators, no '..', no '~', no hidden or control characters)."""
    if not isinstance(name, str):
        raise RecordingError(f"path must be a file name (a string), not {type(name).__name__}")
    shown = name if len(name) <= 60 else name[:60] + "..."
    if (not name or len(name) > MAX_TAKE_NAME or "/" in name or "\\" in name or name.startswith((".", "~"))
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise RecordingError(f"path {shown!r} must be a plain file name such as 'take1.abr' (no folders, "
                             f"'..', '~' or leading '.'; at most {MAX_TAKE_NAME} characters); the daemon writes "
                             "into its takes folder")
    return name


class RecordingControl:
    """The daemon's ``record.start`` / ``record.stop`` / ``record.status`` control commands.

    ``header_provider`` returns header fields known to the daemon ({"source", "fps", "profile"}).
    One recording at a time. A request names only a file in ``take_dir`` (created on first use): any
    process that can reach the control socket can ask, so it must not be able to write anywhere else.
    """

    def __init__(self, bus_endpoint: str, take_dir: str | Path = ".",
                 header_provider: Callable[[], dict[str, Any]] | None = None,
                 context: zmq.Context | None = None) -> None:
        self.bus_endpoint = bus_endpoint
        self.take_dir = Path(take_dir)
        self.header_provider = header_provider
        self._ctx = context
        self.recorder: Recorder | None = None
        self.last: RecordingSummary | None = None

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"record.start": self.start, "record.stop": self.stop, "record.status": self.status}

    def start(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.recorder is not None and self.recorder.running:
            raise RecordingError(f"already recording to {self.recorder.config.path}; send record.stop first")
        path_given = req.get("path")
        name = check_take_name(default_take_name() if path_given is None else path_given)
        overwrite = req.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise RecordingError(f"overwrite must be true or false, not {type(overwrite).__name__}")
        try:
            self.take_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot create the takes folder {self.take_dir}: {exc.strerror}") from None
        path = self.take_dir / name
        info = dict(self.header_provider() if self.header_provider else {})
        config = RecorderConfig(
            path=str(path), bus_endpoint=self.bus_endpoint, fps=float(info.get("fps") or 60.0),
            source=str(info.get("source", "")), profile=info.get("profile"),
            writer=TakeWriterConfig(overwrite=overwrite))
        try:
            recorder = Recorder(config, self._ctx)
        except TakeError as exc:
            raise RecordingError(str(exc)) from None
        self.recorder = recorder.start()
        return {"recording": True, "path": str(path.resolve())}

    def stop(self, req: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.recorder is None:
            raise RecordingError("not recording; send record.start with a path first")
        recorder, self.recorder = self.recorder, None
        self.last = recorder.stop()
        return {"recording": False, **self.last.to_dict(), "summary": self.last.describe()}

    def status(self, req: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.recorder is None:
            out: dict[str, Any] = {"recording": False}
            if self.last is not None:
                out["last"] = self.last.to_dict()
            return out
        return self.recorder.status()

    def close(self) -> None:
        """Stop a recording in progress (daemon shutdown), so its take gets its end record."""
        if self.recorder is not None:
            self.stop()

