"""Live Link Face (UDP, port 11111): the packet Epic's iPhone app sends, so Unreal's stock
Live Link Face / Apple ARKit face source receives us with no plugin.

Byte layout, read off Unreal's receiver (``FNboSerializeFromBuffer`` in AppleARKitLiveLinkSource.cpp:
``FromBuffer >> PacketVer >> DeviceId >> SubjectName >> FrameTime >> BlendShapeCount`` then
``BlendShapeCount`` floats, rejected unless the count equals ``EARFaceBlendShape::MAX`` = 61), all in
network byte order:

    uint8   packet version (6)
    int32   device id length N, then N bytes UTF-8 (an FString/FName on the wire: length-prefixed)
    int32   subject name length M, then M bytes UTF-8
    int32   frame number  | float32 subframe | int32 rate numerator | int32 rate denominator
    uint8   blend shape count (61)
    61 x float32: the 52 ARKit shapes in EARFaceBlendShape order, then HeadYaw, HeadPitch, HeadRoll,
            LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll

The nine angles use Unreal's ARKit face code's units: FRotator degrees / 180 (so -1..1 is -pi..pi),
with yaw and roll negated in the un-mirrored ("face relative") direction. The widely copied
pylivelinkface encoder writes a 4-byte little-endian version and no device-id length; it only parses
because its "$" prefix (0x24 = 36) happens to read as the length of a 36-character UUID.
"""

from __future__ import annotations

import logging
import math
import struct
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.adapters.registry import AdapterEntry
from avatar_bridge.adapters.sender import UdpSender
from avatar_bridge.regions import neutralise_untracked
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

PACKET_VERSION = 6
CURVE_COUNT = 61
ANGLE_NAMES = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
               "RightEyeYaw", "RightEyePitch", "RightEyeRoll")


def _default_device_id() -> str:
    # 36 characters like the app's UUID, stable per machine so Unreal keeps one source.
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"avatar-bridge.{uuid.getnode()}"))


@dataclass(frozen=True)
class LiveLinkFaceConfig:
    host: str = "127.0.0.1"
    port: int = 11111
    rate_hz: float = 60.0
    subject: str = "avatar-bridge"
    device_id: str = field(default_factory=_default_device_id)
    frame_rate: int = 60         # the timecode rate written into each packet
    mirrored: bool = False       # Unreal's "face mirrored" direction: yaw and roll keep ARKit's sign


def _string(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack(">i", len(data)) + data


def face_angles(state: FaceState, mirrored: bool = False) -> list[float]:
    """The nine rotation curves in Unreal's units (radians / pi) and signs."""
    sign = 1.0 if mirrored else -1.0
    yaw, pitch, roll = head_yaw_pitch_roll(state.head_rotation)
    # Unreal's rotator from our ARKit-sense angles: yaw -> -yaw, pitch -> pitch, roll -> roll
    # (handedness change); the un-mirrored direction then negates yaw and roll again.
    out = [sign * -yaw / math.pi, pitch / math.pi, sign * roll / math.pi]
    for gaze_yaw, gaze_pitch in (state.gaze_left, state.gaze_right):
        out += [sign * -gaze_yaw / math.pi, -gaze_pitch / math.pi, 0.0]   # gaze pitch up = nose-down negative
    return out


def encode_live_link_face(state: FaceState, subject: str, device_id: str, frame_number: int,
                          subframe: float = 0.0, rate: tuple[int, int] = (60, 1),
                          mirrored: bool = False) -> bytes:
    """One Live Link Face packet (pure). The packet has no "not tracked": untracked regions
    (headset mode) go out neutral (``regions.neutralise_untracked``)."""
    state = neutralise_untracked(state)
    curves = np.empty(CURVE_COUNT, ">f4")
    curves[:52] = np.asarray(state.blendshapes, np.float32)
    curves[52:] = face_angles(state, mirrored)
    return b"".join((
        struct.pack(">B", PACKET_VERSION), _string(device_id), _string(subject),
        struct.pack(">ifii", int(frame_number), float(subframe), int(rate[0]), int(rate[1])),
        struct.pack(">B", CURVE_COUNT), curves.tobytes()))


def frame_time(t: float, rate: int) -> tuple[int, float]:
    """(frame number, subframe) of ``t`` seconds at ``rate`` fps."""
    frames = t * rate
    whole = math.floor(frames)
    return int(whole) & 0x7FFFFFFF, float(frames - whole)


class LiveLinkFaceSender(UdpSender):
    """Streams FaceStates to Unreal's Live Link Face source as if from the iPhone app."""

    name = "livelink"

    def __init__(self, config: LiveLinkFaceConfig = LiveLinkFaceConfig()) -> None:
        super().__init__(config.host, config.port, config.rate_hz, log)
        self.config = config

    def encode(self, state: FaceState, now: float) -> list[bytes]:
        # Timecode from the wall clock's time of day, as the phone stamps its frames.
        lt = time.localtime()
        seconds = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (time.time() % 1.0)
        number, sub = frame_time(seconds, self.config.frame_rate)
        return [encode_live_link_face(state, self.config.subject, self.config.device_id, number, sub,
                                      (self.config.frame_rate, 1), self.config.mirrored)]

    def extra_stats(self) -> dict:
        return {"subject": self.config.subject}


ADAPTER = AdapterEntry(
    "livelink", LiveLinkFaceConfig, LiveLinkFaceSender, summary="Live Link Face packets to Unreal",
    receiver_hint="Unreal: Window > Live Link > Source > Live Link Face (or Apple ARKit) on port {port}")
