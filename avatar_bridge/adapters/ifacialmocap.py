"""iFacialMocap text-over-UDP (port 49983), the phone protocol VSeeFace, VTube Studio and Warudo accept.

Format as parsed/produced by several independent public implementations (Inochi Session's receiver,
MeowFace-compatible senders and receivers); there is no spec from the app's author in hand:

    name-value|name-value|...|=head#pitch,yaw,roll,x,y,z|rightEye#pitch,yaw,roll|leftEye#pitch,yaw,roll|

52 ARKit names with "_L"/"_R" instead of "Left"/"Right" (eyeBlink_L), values integer percent 0..100;
angles in degrees. The receiving app normally starts the stream by sending the handshake
``iFacialMocap_sahuasouryya9218sauhuiayeta91555dy3719`` to the phone's port 49983; the phone then
streams to the sender's address on 49983. We stream to the configured host directly (as MeowFace
does) and, when ``listen_port`` is set, also follow whoever sends the handshake there.
Head position units and the exact angle signs are not documented publicly: we send ARKit-sense
angles (yaw + = performer's left, pitch + = nose down) and position in centimetres.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.adapters.registry import AdapterEntry
from avatar_bridge.adapters.sender import UdpSender
from avatar_bridge.adapters.udp import bind_udp
from avatar_bridge.regions import neutralise_untracked
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

def _ifm_name(name: str) -> str:
    if name.endswith("Left"):
        return name[:-4] + "_L"
    if name.endswith("Right"):
        return name[:-5] + "_R"
    return name


IFM_NAMES: tuple[str, ...] = tuple(_ifm_name(n) for n in ARKIT_BLENDSHAPES)


@dataclass(frozen=True)
class IFacialMocapConfig:
    host: str = "127.0.0.1"
    port: int = 49983
    rate_hz: float = 60.0
    listen_port: int | None = None   # e.g. 49983 on a machine where the receiving app is elsewhere
    listen_host: str = "127.0.0.1"   # loopback unless told: "0.0.0.0" to hear an app on another machine


def encode_ifacialmocap(state: FaceState) -> bytes:
    """One iFacialMocap v1 text frame (pure); untracked regions go out neutral, as for VMC."""
    state = neutralise_untracked(state)
    pct = np.clip(np.rint(np.asarray(state.blendshapes, np.float32) * 100), 0, 100).astype(int)
    parts = [f"{n}-{v}" for n, v in zip(IFM_NAMES, pct)]
    yaw, pitch, roll = (math.degrees(a) for a in head_yaw_pitch_roll(state.head_rotation))
    x, y, z = (100.0 * c for c in state.head_position)
    parts.append(f"=head#{pitch:.4f},{yaw:.4f},{roll:.4f},{x:.4f},{y:.4f},{z:.4f}")
    for label, (gyaw, gpitch) in (("rightEye", state.gaze_right), ("leftEye", state.gaze_left)):
        parts.append(f"{label}#{-math.degrees(gpitch):.4f},{math.degrees(gyaw):.4f},0.0000")
    return ("|".join(parts) + "|").encode("ascii")


class IFacialMocapSender(UdpSender):
    """Streams FaceStates as an iFacialMocap phone would."""

    name = "ifacialmocap"

    def __init__(self, config: IFacialMocapConfig = IFacialMocapConfig()) -> None:
        super().__init__(config.host, config.port, config.rate_hz, log)
        self.config = config
        self.handshakes = 0
        if config.listen_port is not None:
            sock = bind_udp("ifacialmocap", config.listen_host, config.listen_port, log)
            if sock is not None:
                sock.settimeout(0.2)
                self.spawn(self._listen, sock, name="ifacialmocap-handshake")

    def _listen(self, sock: socket.socket) -> None:
        with sock:
            while not self.stopping.is_set():
                try:
                    data, (host, _) = sock.recvfrom(2048)
                except (socket.timeout, OSError):
                    continue
                # Any "iFacialMocap_..." greeting but the STOP one: apps vary the suffix.
                if data.startswith(b"iFacialMocap_") and b"STOP" not in data and host != self.udp.host:
                    self.handshakes += 1
                    log.info("ifacialmocap: handshake from %s; now sending to %s:%d", host, host, self.config.port)
                    self.retarget(host, self.config.port)

    def encode(self, state: FaceState, now: float) -> list[bytes]:
        return [encode_ifacialmocap(state)]

    def extra_stats(self) -> dict:
        return {"handshakes": self.handshakes}


ADAPTER = AdapterEntry("ifacialmocap", IFacialMocapConfig, IFacialMocapSender,
                       summary="iFacialMocap (VTube Studio, VSeeFace)",
                       receiver_hint="VSeeFace/VTube Studio: choose iFacialMocap as the tracking source")
