"""VRChat OSC: VRCFaceTracking Unified Expressions (v2) avatar parameters + native eye tracking.

* ``/avatar/parameters/<prefix>v2/<Name>`` floats (table in unified_expressions.py, docs/mappings.md);
* ``/tracking/eye/LeftRightPitchYaw`` (degrees; pitch + = down, yaw + = right, as VRCFT sends it)
  and ``/tracking/eye/EyesClosedAmount`` when the avatar has no VRCFT eye parameters of its own;
* only values that moved more than ``threshold`` since last sent (VRChat syncs floats as 8 bits, so
  1/127 is the smallest change anyone can see), at most ``rate_hz`` frames a second, with everything
  re-sent every ``keepalive_s`` (VRChat drops OSC eye tracking after 10 s of silence);
* listens on ``listen_port`` (VRChat sends to 9001) for ``/avatar/change``; then reads the avatar's
  parameter list (OSCQuery, else VRChat's OSC config JSON) and sends only parameters it has, matched
  the way VRCFT matches them (address ends with "v2/<Name>"), and everything again
  (vrchat_avatar.py finds the avatar's parameters, oscquery.py finds VRChat).
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from avatar_bridge.adapters import oscquery
from avatar_bridge.adapters.registry import AdapterEntry
from avatar_bridge.adapters.sender import UdpSender
from avatar_bridge.adapters.udp import bind_udp
from avatar_bridge.adapters.unified_expressions import GAZE_PARAMS, UNIFIED_PARAMS, unified_values
from avatar_bridge.adapters.vrchat_avatar import avatar_changes, avatar_parameters, resolve_addresses
from avatar_bridge.regions import SHAPE_REGION
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
EYE_PITCH_YAW = "/tracking/eye/LeftRightPitchYaw"
EYES_CLOSED = "/tracking/eye/EyesClosedAmount"
# Every v2 name we can drive, in the order they are sent.
PARAMETER_NAMES: tuple[str, ...] = tuple(p.name for p in UNIFIED_PARAMS) + tuple(GAZE_PARAMS)


@dataclass(frozen=True)
class VrchatConfig:
    host: str = "127.0.0.1"
    port: int | None = None            # None: ask OSCQuery, fall back to 9000
    rate_hz: float = 30.0
    threshold: float = 1.0 / 127.0     # VRChat's 8-bit float sync step
    angle_threshold_deg: float = 0.5
    keepalive_s: float = 5.0
    listen_host: str = "127.0.0.1"
    listen_port: int | None = 9001     # where VRChat sends /avatar/change; None = don't listen
    native_eye: bool = True
    prefix: str = "FT/v2/"             # used until the avatar's parameter list is known
    avatar_config_dir: str | None = None   # VRChat's OSC folder; default: LocalLow/VRChat/VRChat/OSC on Windows
    oscquery: bool = True
    discovery_timeout_s: float = 1.5


def untracked_parameters(untracked: frozenset[str]) -> frozenset[str]:
    """The v2 parameters left unsent for these untracked regions: any parameter reading a shape of
    one of them (half a guess is still a guess), and the gaze parameters when gaze is untracked."""
    if not untracked:
        return frozenset()
    out = {p.name for p in UNIFIED_PARAMS if any(SHAPE_REGION[arkit] in untracked for arkit, _ in p.terms)}
    if "gaze" in untracked:
        out.update(GAZE_PARAMS)
    return frozenset(out)


def vrchat_values(state: FaceState) -> dict[str, float]:
    """{v2 parameter name: value} for one frame (pure). Parameters of untracked regions are left
    out, so whatever else drives them (a headset's own eye tracking through VRCFT) keeps them."""
    values = unified_values(state.blendshapes)
    out = {p.name: float(v) for p, v in zip(UNIFIED_PARAMS, values)}
    (ly, lp), (ry, rp) = state.gaze_left, state.gaze_right

    def t(a: float) -> float:
        return max(-1.0, min(1.0, math.tan(a)))

    # VRCFT gaze: X + = right (ours: yaw + = left), Y + = up.
    out.update(EyeLeftX=t(-ly), EyeLeftY=t(lp), EyeRightX=t(-ry), EyeRightY=t(rp), EyeY=t((lp + rp) / 2))
    assert set(GAZE_PARAMS) <= set(out)
    for name in untracked_parameters(state.untracked):
        del out[name]
    return out


def native_eye_values(state: FaceState) -> dict[str, tuple[float, ...]]:
    """VRChat's own eye-tracking addresses for one frame (pure); each is left out when its region
    (gaze, eyes) is untracked, so the headset's eye tracking is not overridden."""
    (ly, lp), (ry, rp) = state.gaze_left, state.gaze_right
    closed = float(np.mean(state.blendshapes[[0, 7]]))  # eyeBlinkLeft, eyeBlinkRight
    out = {EYE_PITCH_YAW: (-math.degrees(lp), -math.degrees(ly), -math.degrees(rp), -math.degrees(ry)),
           EYES_CLOSED: (closed,)}
    if "gaze" in state.untracked:
        del out[EYE_PITCH_YAW]
    if "eyes" in state.untracked:
        del out[EYES_CLOSED]
    return out


def vrchat_messages(state: FaceState, addresses: dict[str, str], native_eye: bool) -> list[tuple[str, tuple[float, ...]]]:
    """(OSC address, float arguments) of every message for one frame, before the change filter (pure):
    the avatar parameters in ``addresses`` ({v2 name: address}), then VRChat's own eye tracking.
    Parameters of untracked regions are absent from ``vrchat_values``: not ours to drive."""
    values = vrchat_values(state)
    out = [(address, (values[name],)) for name, address in addresses.items() if name in values]
    if native_eye:
        out += list(native_eye_values(state).items())
    return out


class _FloatMessages:
    """Caches each address's encoded prefix (built once with python-osc) so a frame is a few
    struct.packs rather than dozens of message builders."""

    def __init__(self) -> None:
        self._prefix: dict[tuple[str, int], bytes] = {}

    def encode(self, address: str, values: tuple[float, ...]) -> bytes:
        key = (address, len(values))
        pre = self._prefix.get(key)
        if pre is None:
            b = OscMessageBuilder(address)
            for _ in values:
                b.add_arg(0.0, "f")
            pre = b.build().dgram[:-4 * len(values)]
            self._prefix[key] = pre
        return pre + struct.pack(f">{len(values)}f", *values)


class _ChangeFilter:
    """Passes a message only when a value moved at least its threshold since last sent, and
    everything once every ``keepalive_s`` (VRChat drops OSC eye tracking after 10 s of silence)."""

    def __init__(self, threshold: float, angle_threshold: float, keepalive_s: float) -> None:
        self.threshold, self.angle_threshold, self.keepalive_s = threshold, angle_threshold, keepalive_s
        self._last: dict[str, tuple[float, ...]] = {}
        self._last_full = 0.0
        self.skipped = 0

    def forget(self) -> None:
        self._last.clear()

    def changed(self, address: str, values: tuple[float, ...], now: float) -> bool:
        if now - self._last_full > self.keepalive_s:
            self._last.clear()
            self._last_full = now
        threshold = self.angle_threshold if address == EYE_PITCH_YAW else self.threshold
        last = self._last.get(address)
        if last is not None and all(abs(a - b) < threshold for a, b in zip(values, last)):
            self.skipped += 1
            return False
        self._last[address] = values
        return True


class VrchatSender(UdpSender):
    """Drives a VRChat avatar's face-tracking parameters and eyes over OSC."""

    name = "vrchat"

    def __init__(self, config: VrchatConfig = VrchatConfig(),
                 discover: Callable[[float], oscquery.OscQueryService | None] = oscquery.discover_vrchat) -> None:
        if config.port is not None:
            port, self.port_reason = config.port, "set explicitly"
        else:
            port, self.port_reason = DEFAULT_PORT, "VRChat's default (OSCQuery lookup pending)"
        super().__init__(config.host, port, config.rate_hz, log)
        self.config = config
        self.encoder = _FloatMessages()
        self.filter = _ChangeFilter(config.threshold, config.angle_threshold_deg, config.keepalive_s)
        self._service: oscquery.OscQueryService | None = None
        self.avatar_id: str | None = None
        self.avatar_changes = 0
        self._addresses = resolve_addresses(list(PARAMETER_NAMES), None, config.prefix)
        self._native = config.native_eye
        self.listen_port: int | None = None

        if config.port is None and config.oscquery:
            self.spawn(self._discover, discover, name="vrchat-oscquery")
        elif config.port is None:
            self.port_reason = "VRChat's default (OSCQuery disabled)"
            log.info("vrchat: sending to %s:%d, %s", config.host, port, self.port_reason)
        else:
            log.info("vrchat: sending to %s:%d (port set explicitly)", config.host, port)
        if config.listen_port is not None:
            sock = bind_udp("vrchat", config.listen_host, config.listen_port, log)
            if sock is None:
                log.warning("vrchat: avatar changes will go unnoticed; sending the %s parameters blind",
                            config.prefix + "v2/*")
            else:
                sock.settimeout(0.2)
                self.listen_port = sock.getsockname()[1]
                self.spawn(self._listen, sock, name="vrchat-listen")

    # --- background work -------------------------------------------------------------------
    def _discover(self, discover) -> None:
        service = None
        try:
            service = discover(self.config.discovery_timeout_s)
        except Exception as exc:  # discovery is optional; a bug in it must not stop sending
            log.warning("vrchat: OSCQuery lookup failed (%s)", exc)
        if service is None:
            self.port_reason = f"VRChat's default (OSCQuery found no VRChat within {self.config.discovery_timeout_s:g} s)"
            log.info("vrchat: sending to %s:%d, %s", self.config.host, DEFAULT_PORT, self.port_reason)
            return
        self._service = service
        self.port_reason = f"found by OSCQuery ({service.name} at {service.http_host}:{service.http_port})"
        log.info("vrchat: sending to %s:%d, %s", service.osc_host, service.osc_port, self.port_reason)
        self.retarget(service.osc_host, service.osc_port)
        self._load_avatar(None)

    def _listen(self, sock: socket.socket) -> None:
        with sock:
            while not self.stopping.is_set():
                try:
                    data = sock.recv(65536)
                except (socket.timeout, OSError):
                    continue
                for avatar_id in avatar_changes(data):
                    self._load_avatar(avatar_id)

    def _load_avatar(self, avatar_id: str | None) -> None:
        """Find which parameters the avatar has, then resend everything."""
        avatar_id, available, source = avatar_parameters(self._service, avatar_id, self.config.avatar_config_dir)
        addresses = resolve_addresses(list(PARAMETER_NAMES), available, self.config.prefix)
        has_eye_params = any(n in addresses for n in GAZE_PARAMS + ("EyeLidLeft", "EyeLidRight"))
        with self.lock:
            self._addresses = addresses
            self._native = self.config.native_eye and not (available is not None and has_eye_params)
            self.filter.forget()
            if avatar_id:
                self.avatar_id = avatar_id
                self.avatar_changes += 1
        if avatar_id:
            log.info("vrchat: avatar %s: %d face parameters (%s)%s", avatar_id, len(addresses), source,
                     "" if self._native else "; its own eye parameters replace native eye tracking")

    # --- per frame ---------------------------------------------------------------------------
    def encode(self, state: FaceState, now: float) -> list[bytes]:
        with self.lock:
            messages = vrchat_messages(state, self._addresses, self._native)
            return [self.encoder.encode(address, values) for address, values in messages
                    if self.filter.changed(address, values, now)]

    def extra_stats(self) -> dict:
        return {"skipped_unchanged": self.filter.skipped, "avatar": self.avatar_id,
                "avatar_changes": self.avatar_changes, "parameters": len(self._addresses),
                "native_eye": self._native, "port_reason": self.port_reason}


ADAPTER = AdapterEntry("vrchat", VrchatConfig, VrchatSender, summary="VRChat OSC (VRCFaceTracking v2 parameters)",
                       receiver_hint="VRChat: enable OSC in the Action Menu (Options > OSC > Enabled)")
