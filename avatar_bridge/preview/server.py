"""The preview server: the page over HTTP, one WebSocket per browser tab, a bus subscriber and the
page's commands forwarded to the daemon's control socket (docs/preview.md).

aiohttp, because one maintained package is both the HTTP and the WebSocket server on asyncio
(starlette needs uvicorn and a websockets library beside it), and pyzmq's asyncio sockets share
its event loop, so the whole server is one thread that never blocks the daemon: it reads the bus
like any subscriber, and the daemon only ever answers control requests between frames.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from aiohttp import WSMsgType, web

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import DEFAULT_CONTROL, DEFAULT_PUB, local_endpoint

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
HEAD_ASSET = Path(__file__).resolve().parents[1] / "assets" / "preview_head.glb"

# What a page may ask of the daemon; anything else is refused by the server, so a page can never
# reach commands added later for other clients.
PAGE_COMMANDS = frozenset({"status", "calibrate", "calibrate.status", "signal.get", "signal.set",
                           "record.start", "record.stop", "record.status"})
_TAKE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class PreviewError(RuntimeError):
    """The preview could not start (e.g. its port is taken); the text says what to do."""


@dataclass(frozen=True)
class PreviewConfig:
    host: str = "127.0.0.1"            # loopback: the page (and the camera view) stay on this machine
    port: int = 8570
    bus_endpoint: str = DEFAULT_PUB
    control_endpoint: str = DEFAULT_CONTROL
    max_hz: float = 60.0               # face states per tab at most this often (a display's rate); latest wins
    camera_hz: float = 15.0            # camera frames per second while a tab shows the camera view
    gone_after_s: float = 2.5          # status comes at 1 Hz: this long without any message, the daemon is gone
    control_timeout_s: float = 3.0
    control_token: str | None = None   # the daemon's secret, when its control socket is bound beyond loopback

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _Tab:
    """One browser tab: its socket, the newest face payload not yet sent, and its camera switch."""

    def __init__(self, ws: web.WebSocketResponse, loopback: bool) -> None:
        self.ws = ws
        self.loopback = loopback
        self.camera = False
        self.face: bytes | None = None
        self.face_ready = asyncio.Event()

    def push_face(self, payload: bytes) -> None:
        self.face = payload           # latest wins: a tab that draws slower than the bus skips states
        self.face_ready.set()


class PreviewServer:
    """Serves the page and relays the bus (faces throttled to ``max_hz`` per tab, status, daemon
    gone/back) and page commands (to the control socket). ``start``/``stop`` on a running loop."""

    def __init__(self, config: PreviewConfig) -> None:
        self.config = config
        self._ctx = zmq.asyncio.Context()
        self._tabs: set[_Tab] = set()
        self._tasks: list[asyncio.Task] = []
        self._camera_task: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self.daemon_alive = False
        self.last_status: dict[str, Any] | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_get("/head.glb", self._head)
        self.app.router.add_static("/static/", STATIC_DIR)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise PreviewError(f"cannot serve the preview on {self.config.host}:{self.config.port}: {exc.strerror}. "
                               "Is another preview running? Pick another port with --preview-port") from exc
        self._tasks.append(_logged(asyncio.create_task(self._bus_loop())))
        log.info("preview: %s (bus %s, control %s)", self.config.url, self.config.bus_endpoint,
                 self.config.control_endpoint)

    async def stop(self) -> None:
        for task in self._tasks + ([self._camera_task] if self._camera_task else []):
            task.cancel()
        for tab in list(self._tabs):
            await tab.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._ctx.destroy(linger=0)

    # --- bus side -------------------------------------------------------------------------------

    async def _bus_loop(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 64)   # the preview only ever wants the newest state
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_FACE)
        sock.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_STATUS)
        sock.connect(local_endpoint(self.config.bus_endpoint))
        last_heard = 0.0
        try:
            while True:
                if await sock.poll(250, zmq.POLLIN):
                    face, status = await self._drain(sock)
                    last_heard = time.monotonic()
                    if not self.daemon_alive:
                        await self._set_alive(True)
                    if face is not None:
                        for tab in self._tabs:
                            tab.push_face(face)
                    if status is not None:
                        self.last_status = status
                        await self._broadcast({"type": "status", "status": status})
                elif self.daemon_alive and time.monotonic() - last_heard > self.config.gone_after_s:
                    await self._set_alive(False)
        finally:
            sock.close(linger=0)

    @staticmethod
    async def _drain(sock: zmq.asyncio.Socket) -> tuple[bytes | None, dict[str, Any] | None]:
        """Everything queued, keeping only the newest face payload and status map."""
        face = status = None
        while True:
            try:
                parts = await sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return face, status
            if len(parts) != 2:
                continue
            if parts[0] == wire.TOPIC_FACE:
                face = parts[1]
            elif parts[0] == wire.TOPIC_STATUS:
                try:
                    status = wire.decode_map(parts[1])
                except wire.WireError as exc:
                    log.warning("preview: skipping a malformed status message: %s", exc)

    async def _set_alive(self, alive: bool) -> None:
        self.daemon_alive = alive
        log.info("preview: daemon %s", "found" if alive else "gone")
        await self._broadcast({"type": "daemon", "alive": alive})

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the daemon's control socket; a daemon that does not answer is an error reply."""
        endpoint = local_endpoint(self.config.control_endpoint)
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        try:
            token = self.config.control_token
            await sock.send(wire.encode_map({**request, "token": token} if token else request))
            if not await sock.poll(int(self.config.control_timeout_s * 1000), zmq.POLLIN):
                return {"ok": False, "error": f"the daemon did not answer on {endpoint} within "
                                              f"{self.config.control_timeout_s:g} s; is `avatar-bridge run` running?"}
            return wire.decode_map(await sock.recv())
        finally:
            sock.close(linger=0)

    # --- page side ------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _head(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(HEAD_ASSET, headers={"Content-Type": "model/gltf-binary"})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        # A page from another site may open a WebSocket to 127.0.0.1 too (browsers allow it); only
        # our own page may drive the daemon, so a foreign Origin is refused.
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text=f"the preview only talks to its own page, not to {origin}")
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        tab = _Tab(ws, is_loopback(request.remote))
        self._tabs.add(tab)
        sender = asyncio.create_task(self._send_faces(tab))
        try:
            await ws.send_json({"type": "hello", "names": list(ARKIT_BLENDSHAPES), "bus": self.config.bus_endpoint,
                                "control": self.config.control_endpoint, "camera_allowed": tab.loopback})
            await ws.send_json({"type": "daemon", "alive": self.daemon_alive})
            if self.last_status is not None:
                await ws.send_json({"type": "status", "status": self.last_status})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(json.dumps(await self._page_command(tab, msg.data), default=_jsonable))
        finally:
            sender.cancel()
            self._tabs.discard(tab)
        return ws

    async def _send_faces(self, tab: _Tab) -> None:
        interval = 1.0 / self.config.max_hz
        while True:
            await tab.face_ready.wait()
            tab.face_ready.clear()
            if tab.face is not None and not tab.ws.closed:
                await tab.ws.send_bytes(tab.face)
            await asyncio.sleep(interval)

    async def _page_command(self, tab: _Tab, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
            if not isinstance(req, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            return {"type": "reply", "id": None, "reply": {"ok": False, "error": f"bad page message: {exc}"}}
        rid, cmd = req.pop("id", None), req.get("cmd")
        if cmd == "camera":
            reply = self._switch_camera(tab, bool(req.get("on")))
        elif cmd == "record.start" and "name" in req:
            name = str(req.pop("name")).strip()
            if not _TAKE_NAME.match(name):
                reply = {"ok": False, "error": f"take name {name!r} must be a plain file name like 'take1' "
                                               "(letters, digits, _ . -)"}
            else:
                req["path"] = name if name.endswith(".abr") else name + ".abr"
                reply = await self.control(req)
        elif cmd in PAGE_COMMANDS:
            reply = await self.control(req)
        else:
            reply = {"ok": False, "error": f"the preview does not forward {cmd!r}; it sends "
                                           f"{', '.join(sorted(PAGE_COMMANDS | {'camera'}))}"}
        return {"type": "reply", "id": rid, "cmd": cmd, "reply": reply}

    def _switch_camera(self, tab: _Tab, on: bool) -> dict[str, Any]:
        # The daemon serves camera frames only on a loopback control socket; the page must be local too.
        if on and not tab.loopback:
            return {"ok": False, "error": "the camera view is only shown on this machine; open the preview "
                                          f"at http://127.0.0.1:{self.config.port}/ there"}
        tab.camera = on
        if on and (self._camera_task is None or self._camera_task.done()):
            self._camera_task = _logged(asyncio.create_task(self._camera_loop()))
        return {"ok": True, "camera": on}

    async def _camera_loop(self) -> None:
        """Fetch frames from the daemon only while some tab shows the camera view."""
        interval = 1.0 / self.config.camera_hz
        while any(t.camera for t in self._tabs):
            t0 = time.monotonic()
            reply = await self.control({"cmd": "camera.frame"})
            msg = {"type": "camera", "frame": reply}
            for tab in [t for t in self._tabs if t.camera]:
                if not tab.ws.closed:
                    await tab.ws.send_str(json.dumps(msg, default=_jsonable))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    async def _broadcast(self, msg: dict[str, Any]) -> None:
        text = json.dumps(msg, default=_jsonable)
        for tab in list(self._tabs):
            if not tab.ws.closed:
                await tab.ws.send_str(text)


def _logged(task: asyncio.Task) -> asyncio.Task:
    """A background task whose failure is logged rather than lost with the task object."""
    def done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("preview: %s failed", t.get_name(), exc_info=t.exception())
    task.add_done_callback(done)
    return task


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(obj).decode("ascii")   # camera JPEGs
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class PreviewThread:
    """A PreviewServer on its own event loop in a background thread (``run --preview`` beside the
    daemon's frame loop, or ``preview`` on its own). ``start`` raises PreviewError if it cannot serve."""

    def __init__(self, config: PreviewConfig) -> None:
        self.config = config
        self.server: PreviewServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)

    def start(self, timeout_s: float = 10.0) -> "PreviewThread":
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise PreviewError(f"the preview did not start within {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.server = PreviewServer(self.config)
        try:
            await self.server.start()
        except BaseException as exc:  # handed to start() in the caller's thread
            self._error = exc if isinstance(exc, PreviewError) else PreviewError(f"the preview failed to start: {exc}")
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()
