"""The ZeroMQ bus: a PUB socket for face/status and a REP control socket (docs/protocol.md)."""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from avatar_bridge.bus import wire
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

DEFAULT_PUB = "tcp://127.0.0.1:5570"
DEFAULT_CONTROL = "tcp://127.0.0.1:5571"


def local_endpoint(bind_endpoint: str) -> str:
    """Where a subscriber on this machine connects to reach a socket bound to ``bind_endpoint``."""
    return bind_endpoint.replace("://0.0.0.0:", "://127.0.0.1:").replace("://*:", "://127.0.0.1:")


class BusError(RuntimeError):
    """The bus could not start (e.g. a port already in use); the text says what to do."""


@dataclass(frozen=True)
class BusConfig:
    pub_endpoint: str = DEFAULT_PUB          # loopback by default: nothing leaves the machine unless asked
    control_endpoint: str = DEFAULT_CONTROL
    # Messages queued per subscriber before ZeroMQ drops for it; ~4 s at 60 fps, so a slow or
    # dead subscriber costs memory bounded by this and never blocks the daemon.
    send_hwm: int = 256
    # A secret every control request must carry as "token". Required when the control socket is bound
    # beyond loopback (anyone who can reach the port could otherwise record, recalibrate or stop takes);
    # optional on loopback, where only this machine's processes can connect (docs/protocol.md).
    control_token: str | None = None


# Requests larger than this get an error reply without being decoded (the biggest real one, a
# signal.set with every filter group, is a few hundred bytes). Beyond MAX_FRAME_BYTES ZeroMQ itself
# drops the connection before we see the bytes, so a peer cannot make the daemon buffer more.
MAX_REQUEST_BYTES = 64 * 1024
MAX_FRAME_BYTES = 16 * 1024 * 1024
# How much of a client's text (a command name, an error) is ever echoed back or logged.
ECHO_CHARS = 80


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether a ZeroMQ bind endpoint is reachable from this machine only (ipc/inproc, or tcp on loopback);
    anything else (0.0.0.0, *, an interface name, a host name) is treated as reachable from outside."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def short(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a 10 MB field is never echoed or logged whole."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class RateLimitedLog:
    """Logs at most ``burst`` lines per ``window_s``; the rest are counted and reported in the next line
    that gets through, so a flood of bad requests costs a few log lines, not megabytes."""

    def __init__(self, logger: logging.Logger, burst: int = 5, window_s: float = 10.0) -> None:
        self.logger, self.burst, self.window_s = logger, burst, window_s
        self._window_start = -window_s
        self._in_window = 0
        self.suppressed = 0

    def warning(self, message: str, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.window_s:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self.burst:
            self.suppressed += 1
            return
        self._in_window += 1
        if self.suppressed:
            message += f" ({self.suppressed} similar line(s) suppressed)"
            self.suppressed = 0
        self.logger.warning("%s", message, exc_info=exc_info)


def _bind(sock: zmq.Socket, endpoint: str, what: str) -> None:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        hint = ""
        if exc.errno == zmq.EADDRINUSE:
            hint = (" — another avatar-bridge (or another program) is using it. Stop it, or pick another "
                    "port, e.g. --bus tcp://127.0.0.1:5580 --control tcp://127.0.0.1:5581")
        raise BusError(f"cannot bind the {what} socket to {endpoint}: {exc.strerror}{hint}") from exc


class BusPublisher:
    """Publishes FaceStates (topic ``face``) and health (``status``); never blocks."""

    def __init__(self, config: BusConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, config.send_hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        _bind(self._sock, config.pub_endpoint, "publisher")
        self.seq = 0
        self.dropped = 0
        log.info("bus: publishing on %s", config.pub_endpoint)

    def _send(self, topic: bytes, payload: bytes) -> bool:
        try:
            self._sock.send_multipart([topic, payload], flags=zmq.NOBLOCK)
            return True
        except zmq.Again:  # PUB drops silently at HWM; this only fires in odd states, count it
            self.dropped += 1
            return False

    def publish_face(self, state: FaceState) -> int:
        """Send one FaceState; returns its sequence number (consecutive, starting at 0)."""
        seq = self.seq
        self._send(wire.TOPIC_FACE, wire.encode_face(state, seq))
        self.seq += 1
        return seq

    def publish_status(self, status: dict[str, Any]) -> None:
        self._send(wire.TOPIC_STATUS, wire.encode_map({"v": wire.SCHEMA_VERSION, **status}))

    def publish_texture(self, jpeg: bytes, seq: int, frame_index: int, width: int, height: int) -> None:
        """One generated face image (docs/protocol.md, topic ``texture``); ``seq`` is the face
        message's it shows."""
        self._send(wire.TOPIC_TEXTURE, wire.encode_map({
            "v": wire.SCHEMA_VERSION, "seq": seq, "frame": frame_index, "format": "jpeg",
            "width": width, "height": height, "jpeg": jpeg}))

    def close(self) -> None:
        self._sock.close(linger=0)


class BusSubscriber:
    """A SUB socket on the bus; ``recv`` returns (topic, payload bytes) or None on timeout."""

    def __init__(self, endpoint: str = DEFAULT_PUB, topics: tuple[bytes, ...] = (wire.TOPIC_FACE,),
                 context: zmq.Context | None = None, rcv_hwm: int = 10000) -> None:
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, rcv_hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, t)
        self._sock.connect(endpoint)
        self.endpoint = endpoint

    def recv(self, timeout_ms: int = 1000) -> tuple[bytes, bytes] | None:
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return None
        parts = self._sock.recv_multipart()
        if len(parts) != 2:
            return (parts[0] if parts else b"", b"")
        return parts[0], parts[1]

    def close(self) -> None:
        self._sock.close(linger=0)


ControlHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """REP socket answering ``{"cmd": ...}`` maps; always replies, with ``{"ok": false, "error": ...}``
    for anything it cannot serve (multipart, empty, oversized, not msgpack, unknown), so a client never
    hangs and no request can put the socket in a state where it stops answering."""

    def __init__(self, config: BusConfig, handlers: dict[str, ControlHandler],
                 context: zmq.Context | None = None) -> None:
        if config.control_token is not None and not config.control_token:
            raise BusError("the control token is empty; give a secret of a few words, or none on loopback")
        if not is_loopback_endpoint(config.control_endpoint) and not config.control_token:
            raise BusError(f"the control socket {config.control_endpoint} is reachable from other machines, so it "
                           "needs a secret: pass --control-token SECRET (clients send it as \"token\"), or bind it "
                           "to 127.0.0.1")
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        _bind(self._sock, config.control_endpoint, "control")
        self.handlers = handlers
        self.token = config.control_token
        self.errors = 0
        self._log = RateLimitedLog(log)
        log.info("bus: control socket on %s%s", config.control_endpoint, " (token required)" if self.token else "")

    def handle_parts(self, parts: list[bytes]) -> dict[str, Any]:
        """The reply to one request, given as the frames it arrived in."""
        if len(parts) != 1:
            return {"ok": False, "error": f"a request is one message frame, not {len(parts)}; send one msgpack "
                                          "map like {'cmd': 'status'}"}
        return self.handle(parts[0])

    def handle(self, payload: bytes) -> dict[str, Any]:
        if not payload:
            return {"ok": False, "error": "empty request; send a msgpack map like {'cmd': 'status'}"}
        if len(payload) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request of {len(payload)} bytes is over the {MAX_REQUEST_BYTES}-byte "
                                          "limit; control requests are small maps like {'cmd': 'status'}"}
        try:
            req = wire.decode_map(payload)
        except wire.WireError as exc:
            return {"ok": False, "error": f"malformed request: {short(str(exc))}. Send a msgpack map like "
                                          "{'cmd': 'status'}"}
        if self.token is not None:
            given = req.get("token")
            if not (isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())):
                return {"ok": False, "error": "this control socket needs the daemon's token: add \"token\" to the "
                                              "request (the secret given to `run --control-token`)"}
        cmd = req.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {short(cmd)}", "commands": sorted(self.handlers)}
        try:
            return {"ok": True, **handler(req)}
        except Exception as exc:  # a handler bug must not kill the daemon; the client is told
            self._log.warning(f"control command {short(cmd)} failed: {short(str(exc), 200)}",
                              exc_info=not isinstance(exc, (ValueError, RuntimeError, OSError)))
            return {"ok": False, "error": f"{short(cmd)} failed: {short(str(exc), 300)}"}

    def poll_once(self, timeout_ms: int = 0) -> bool:
        """Serve at most one pending request; returns whether one was served."""
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return False
        try:
            # All frames are read, whatever their number: a REP socket that has not consumed the whole
            # request refuses to send, and the next recv would fail for every later client too.
            parts = self._sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:   # the peer went away between poll and recv
            return False
        reply = self.handle_parts(parts)
        if not reply.get("ok"):
            self.errors += 1
            self._log.warning(f"control: {short(reply.get('error'), 200)}")
        try:
            self._sock.send(wire.encode_map(reply), zmq.NOBLOCK)
        except zmq.ZMQError as exc:   # the requester is gone; REP drops the reply and is ready again
            self._log.warning(f"control: reply not sent: {exc.strerror}")
        return True

    def close(self) -> None:
        self._sock.close(linger=0)


def control_request(request: dict[str, Any], endpoint: str = DEFAULT_CONTROL, timeout_ms: int = 3000,
                    context: zmq.Context | None = None, token: str | None = None) -> dict[str, Any]:
    """Send one control request to a running daemon and return its reply map (``token``: the daemon's
    secret, needed when its control socket is bound beyond loopback)."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(wire.encode_map({**request, "token": token} if token else request))
        if not sock.poll(timeout_ms, zmq.POLLIN):
            raise TimeoutError(f"no reply from {endpoint} within {timeout_ms} ms — is `avatar-bridge run` running?")
        return wire.decode_map(sock.recv())
    finally:
        sock.close(linger=0)
