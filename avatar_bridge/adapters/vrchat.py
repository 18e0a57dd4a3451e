"""VRChat OSC: VRCFaceTracking Unified Expressions (v2) avatar parameters + native eye tracking.

* ``/avatar/parameters/<prefix>v2/<Name>`` floats (table in unified_expressions.py, docs/mappings.md);
* ``/tracking/eye/LeftRightPitchYaw`` (degrees; pitch + = down, yaw + = right, as VRCFT sends it)
  and ``/tracking/eye/EyesClosedAmount`` when the avatar has no VRCFT eye parameters of its own;
* only values that moved more than ``threshold`` since last sent (VRChat syncs floats as 8 bits, so
  1/127 is the smallest change anyone can see), at most ``rate_hz`` frames a second, with everything
  re-sent every ``keepalive_s`` (VRChat drops OSC eye tracking after 10 s of silence);
* listens on ``listen_port`` (VRChat sends to 9001) for ``/avatar/change``; then reads the avatar's
  parameter list (OSCQuery, else VRChat's OSC config JSON) and sends only parameters it has, matched
  the way VRCFT matches them (address ends with "v2/<Name>"), and everything again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from avatar_bridge.adapters import oscquery
from avatar_bridge.adapters.udp import RateGate, UdpTarget, bind_udp
from avatar_bridge.adapters.unified_expressions import GAZE_PARAMS, UNIFIED_PARAMS, unified_values
from avatar_bridge.regions import SHAPE_REGION
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
AVATAR_PARAMS = "/avatar/parameters/"
EYE_PITCH_YAW = "/tracking/eye/LeftRightPitchYaw"
EYES_CLOSED = "/tracking/eye/EyesClosedAmount"


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


def load_avatar_config(path: str | os.PathLike) -> dict[str, str]:
    """{input address: type} from a VRChat avatar OSC config JSON (parameters[].input)."""
    with open(path, encoding="utf-8-sig") as fh:
        doc = json.load(fh)
    out = {}
    for p in doc.get("parameters", []):
        inp = p.get("input") if isinstance(p, dict) else None
        if isinstance(inp, dict) and isinstance(inp.get("address"), str):
            out[inp["address"]] = str(inp.get("type", ""))
    return out


def resolve_addresses(names: list[str], available: dict[str, str] | None, prefix: str) -> dict[str, str]:
    """{v2 name: OSC address}. Unknown avatar: everything under ``prefix``; known: only the float
    parameters whose address ends with "v2/<name>" (VRCFT's rule), in its spelling."""
    if available is None:
        return {n: f"{AVATAR_PARAMS}{prefix}{n}" for n in names}
    out = {}
    for n in names:
        suffix = "v2/" + n
        for address, kind in available.items():
            if address.startswith(AVATAR_PARAMS) and address.endswith(suffix) and kind.lower() in ("float", "f"):
                out[n] = address
                break
    return out


def default_avatar_config_dir() -> Path | None:
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]).parent / "LocalLow" / "VRChat" / "VRChat" / "OSC"
    return None


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


class VrchatSender:
    """Drives a VRChat avatar's face-tracking parameters and eyes over OSC."""

    name = "vrchat"

    def __init__(self, config: VrchatConfig = VrchatConfig(),
                 discover: Callable[[float], oscquery.OscQueryService | None] = oscquery.discover_vrchat) -> None:
        self.config = config
        self.gate = RateGate(config.rate_hz)
        self.encoder = _FloatMessages()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, ...]] = {}
        self._last_full = 0.0
        self._service: oscquery.OscQueryService | None = None
        self.avatar_id: str | None = None
        self.avatar_changes = self.skipped_unchanged = 0
        self._available: dict[str, str] | None = None
        self._addresses = resolve_addresses(self._names(), None, config.prefix)
        self._native = config.native_eye
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listen_port: int | None = None

        if config.port is not None:
            port, self.port_reason = config.port, "set explicitly"
        else:
            port, self.port_reason = DEFAULT_PORT, "VRChat's default (OSCQuery lookup pending)"
        self.udp = UdpTarget("vrchat", config.host, port, log)
        if config.port is None and config.oscquery:
            self._spawn(self._discover, discover, "vrchat-oscquery")
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
                self._spawn(self._listen, sock, "vrchat-listen")

    # --- background work -------------------------------------------------------------------
    def _spawn(self, fn, arg, name: str) -> None:
        t = threading.Thread(target=fn, args=(arg,), daemon=True, name=name)
        self._threads.append(t)
        t.start()

    @staticmethod
    def _names() -> list[str]:
        return [p.name for p in UNIFIED_PARAMS] + list(GAZE_PARAMS)

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
        with self._lock:
            old, self.udp = self.udp, UdpTarget("vrchat", service.osc_host, service.osc_port, log)
        old.close()
        self._load_avatar(None)

    def _listen(self, sock: socket.socket) -> None:
        with sock:
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except (socket.timeout, OSError):
                    continue
                for address, args in _osc_messages(data):
                    if address == "/avatar/change" and args and isinstance(args[0], str):
                        self._load_avatar(args[0])

    def _load_avatar(self, avatar_id: str | None) -> None:
        """Find which parameters the avatar has, then resend everything."""
        available, source = None, "none found; sending every parameter"
        if self._service is not None:
            try:
                found_id, params = oscquery.fetch_avatar(self._service)
                avatar_id = avatar_id or found_id
                if params:
                    available, source = params, "OSCQuery"
            except (OSError, ValueError) as exc:
                log.debug("vrchat: OSCQuery /avatar failed: %s", exc)
        if available is None and avatar_id:
            path = self._find_config(avatar_id)
            if path is not None:
                try:
                    available, source = load_avatar_config(path), str(path)
                except (OSError, ValueError) as exc:
                    log.warning("vrchat: cannot read avatar config %s: %s", path, exc)
        addresses = resolve_addresses(self._names(), available, self.config.prefix)
        has_eye_params = any(n in addresses for n in GAZE_PARAMS + ("EyeLidLeft", "EyeLidRight"))
        with self._lock:
            self._available, self._addresses = available, addresses
            self._native = self.config.native_eye and not (available is not None and has_eye_params)
            self._last.clear()
            if avatar_id:
                self.avatar_id = avatar_id
                self.avatar_changes += 1
        if avatar_id:
            log.info("vrchat: avatar %s: %d face parameters (%s)%s", avatar_id, len(addresses), source,
                     "" if self._native else "; its own eye parameters replace native eye tracking")

    def _find_config(self, avatar_id: str) -> Path | None:
        root = Path(self.config.avatar_config_dir) if self.config.avatar_config_dir else default_avatar_config_dir()
        if root is None or not root.is_dir():
            return None
        for candidate in [root / f"{avatar_id}.json", *root.glob(f"*/Avatars/{avatar_id}.json")]:
            if candidate.is_file():
                return candidate
        return None

    # --- per frame ---------------------------------------------------------------------------
    def _changed(self, address: str, values: tuple[float, ...], threshold: float) -> bool:
        last = self._last.get(address)
        if last is not None and all(abs(a - b) < threshold for a, b in zip(values, last)):
            self.skipped_unchanged += 1
            return False
        self._last[address] = values
        return True

    def send(self, state: FaceState) -> None:
        now = time.monotonic()
        if not self.gate.allow(now):
            return
        values = vrchat_values(state)
        with self._lock:
            if now - self._last_full > self.config.keepalive_s:
                self._last.clear()
                self._last_full = now
            packets = []
            for name, address in self._addresses.items():
                if name not in values:      # an untracked region: not ours to drive
                    continue
                v = (values[name],)
                if self._changed(address, v, self.config.threshold):
                    packets.append(self.encoder.encode(address, v))
            if self._native:
                eye = native_eye_values(state)
                if EYE_PITCH_YAW in eye and self._changed(EYE_PITCH_YAW, eye[EYE_PITCH_YAW],
                                                          self.config.angle_threshold_deg):
                    packets.append(self.encoder.encode(EYE_PITCH_YAW, eye[EYE_PITCH_YAW]))
                if EYES_CLOSED in eye and self._changed(EYES_CLOSED, eye[EYES_CLOSED], self.config.threshold):
                    packets.append(self.encoder.encode(EYES_CLOSED, eye[EYES_CLOSED]))
            udp = self.udp
        for p in packets:
            if not udp.send(p):
                break  # one failure per frame is enough; the next frame retries

    def stats(self) -> dict:
        return {**self.udp.stats(), "dropped_rate": self.gate.dropped, "skipped_unchanged": self.skipped_unchanged,
                "avatar": self.avatar_id, "avatar_changes": self.avatar_changes,
                "parameters": len(self._addresses), "native_eye": self._native, "port_reason": self.port_reason}

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        self.udp.close()


def _osc_messages(data: bytes):
    """(address, params) of every message in an OSC packet; malformed packets yield nothing."""
    try:
        if OscBundle.dgram_is_bundle(data):
            for item in OscBundle(data):
                if isinstance(item, OscMessage):
                    yield item.address, item.params
                elif isinstance(item, OscBundle):
                    yield from _osc_messages(item.dgram)
        else:
            msg = OscMessage(data)
            yield msg.address, msg.params
    except Exception as exc:  # python-osc raises ParseError and others on garbage; log, don't die
        log.debug("vrchat: ignored a malformed OSC packet (%s)", exc)
