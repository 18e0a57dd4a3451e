"""The companion's loop: bus -> panel, panel clicks -> control socket, HMD pose -> ``head.set``.

One thread, ``step()`` per tick (``run`` ticks at ``rate_hz``): drain the bus without blocking, read
the HMD pose and send it, handle the clicks, redraw the panel at ``redraw_hz``. A daemon that is
not running only makes the panel say "tracking off"; every control failure is one logged line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import DEFAULT_CONTROL, DEFAULT_PUB, BusSubscriber
from avatar_bridge_openvr.hmd import head_quaternion
from avatar_bridge_openvr.openvr_layer import OpenVRLayer
from avatar_bridge_openvr.overlay import OverlayConfig, OverlayModel

log = logging.getLogger("avatar_bridge_openvr")


@dataclass(frozen=True)
class CompanionConfig:
    bus: str = DEFAULT_PUB
    control: str = DEFAULT_CONTROL
    rate_hz: float = 90.0          # HMD poses sent per second (the daemon uses the newest per frame)
    redraw_hz: float = 10.0        # panel redraws per second
    hmd_head: bool = True          # publish the HMD's rotation as the head pose
    control_timeout_ms: int = 500
    overlay: OverlayConfig = OverlayConfig()


class ControlClient:
    """A REQ socket that survives a daemon that is away: a timed-out request resets the socket."""

    def __init__(self, endpoint: str, timeout_ms: int, context: zmq.Context) -> None:
        self.endpoint, self.timeout_ms, self._ctx = endpoint, timeout_ms, context
        self._sock: zmq.Socket | None = None
        self.failures = 0

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.connect(self.endpoint)
        self._sock.send(wire.encode_map(req))
        if not self._sock.poll(self.timeout_ms, zmq.POLLIN):
            self._sock.close(linger=0)
            self._sock = None                 # a REQ socket that missed its reply cannot send again
            self.failures += 1
            return {"error": f"no reply from {self.endpoint} (is `avatar-bridge run` running?)"}
        return wire.decode_map(self._sock.recv())

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)


class Companion:
    """Wires an OpenVRLayer, an OverlayModel, the bus and the control socket (see module docstring)."""

    def __init__(self, layer: OpenVRLayer, config: CompanionConfig = CompanionConfig(),
                 clock: Callable[[], float] = time.monotonic, context: zmq.Context | None = None) -> None:
        self.layer, self.config, self.clock = layer, config, clock
        ctx = context or zmq.Context.instance()
        self.model = OverlayModel(config.overlay)
        self.bus = BusSubscriber(config.bus, topics=(wire.TOPIC_FACE, wire.TOPIC_STATUS), context=ctx)
        self.control = ControlClient(config.control, config.control_timeout_ms, ctx)
        self._next_draw = -1e18
        self.malformed = 0
        self.poses_sent = 0

    def _drain_bus(self) -> None:
        now = self.clock()
        while (got := self.bus.recv(0)) is not None:
            topic, payload = got
            try:
                if topic == wire.TOPIC_FACE:
                    self.model.on_face(wire.decode_face_message(payload))
                elif topic == wire.TOPIC_STATUS:
                    self.model.on_status(wire.decode_map(payload), now)
            except wire.WireError as exc:
                self.malformed += 1
                log.debug("skipped a malformed %s message: %s", topic, exc)

    def step(self) -> None:
        self._drain_bus()
        if self.config.hmd_head:
            pose = self.layer.hmd_pose()
            if pose is not None:
                reply = self.control.request({"cmd": "head.set", "q": list(head_quaternion(pose)), "source": "openvr"})
                if "error" in reply:
                    log.debug("head.set: %s", reply["error"])
                else:
                    self.poses_sent += 1
        for click in self.layer.clicks():
            hit = self.model.click(click.x, click.y)
            if hit is None:
                continue
            name, req = hit
            reply = self.control.request(req)
            self.model.on_reply(name, reply)
            if "error" in reply:
                log.warning("%s: %s", name, reply["error"])
        now = self.clock()
        if now >= self._next_draw:
            self.layer.show(self.model.render(now))
            self._next_draw = now + 1.0 / self.config.redraw_hz

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        period = 1.0 / self.config.rate_hz
        while not stop():
            started = self.clock()
            self.step()
            time.sleep(max(0.0, period - (self.clock() - started)))

    def close(self) -> None:
        self.bus.close()
        self.control.close()
        self.layer.close()
