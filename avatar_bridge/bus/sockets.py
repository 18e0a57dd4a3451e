"""The ZeroMQ bus: a PUB socket for face/status/texture and a REP control socket (docs/protocol.md)."""

from __future__ import annotations

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
    """Publishes FaceStates (topic ``face``), health (``status``) and textures; never blocks."""

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

    def recv_face(self, timeout_ms: int = 1000) -> tuple[int, FaceState] | None:
        """Next valid face message as (seq, FaceState); raises wire.WireError on a malformed one."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            got = self.recv(left)
            if got is None:
                return None
            topic, payload = got
            if topic == wire.TOPIC_FACE:
                return wire.decode_face(payload)

    def close(self) -> None:
        self._sock.close(linger=0)


ControlHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """REP socket answering ``{"cmd": ...}`` maps; always replies, with ``{"ok": false, "error": ...}``
    for anything it cannot serve, so a client never hangs."""

    def __init__(self, config: BusConfig, handlers: dict[str, ControlHandler],
                 context: zmq.Context | None = None) -> None:
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        _bind(self._sock, config.control_endpoint, "control")
        self.handlers = handlers
        self.errors = 0
        log.info("bus: control socket on %s", config.control_endpoint)

    def handle(self, payload: bytes) -> dict[str, Any]:
        try:
            req = wire.decode_map(payload)
        except wire.WireError as exc:
            return {"ok": False, "error": f"malformed request: {exc}. Send a msgpack map like {{'cmd': 'status'}}"}
        cmd = req.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}", "commands": sorted(self.handlers)}
        try:
            return {"ok": True, **handler(req)}
        except Exception as exc:  # a handler bug must not kill the daemon; the client is told
            log.exception("control command %r failed", cmd)
            return {"ok": False, "error": f"{cmd} failed: {exc}"}

    def poll_once(self, timeout_ms: int = 0) -> bool:
        """Serve at most one pending request; returns whether one was served."""
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return False
        payload = self._sock.recv()
        reply = self.handle(payload)
        if not reply.get("ok"):
            self.errors += 1
            log.warning("control: %s", reply.get("error"))
        self._sock.send(wire.encode_map(reply))
        return True

    def close(self) -> None:
        self._sock.close(linger=0)


def control_request(request: dict[str, Any], endpoint: str = DEFAULT_CONTROL, timeout_ms: int = 3000,
                    context: zmq.Context | None = None) -> dict[str, Any]:
    """Send one control request to a running daemon and return its reply map."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(wire.encode_map(request))
        if not sock.poll(timeout_ms, zmq.POLLIN):
            raise TimeoutError(f"no reply from {endpoint} within {timeout_ms} ms — is `avatar-bridge run` running?")
        return wire.decode_map(sock.recv())
    finally:
        sock.close(linger=0)
