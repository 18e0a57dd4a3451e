"""VMC protocol (OSC over UDP, performer -> marionette): ARKit "perfect sync" blendshapes + head bone.

Per frame, one OSC bundle (about 3 KB) holding, in this order: ``/VMC/Ext/Root/Pos "root"`` (identity:
a face tracker does not move the body), ``/VMC/Ext/Bone/Pos "Head"`` (+ ``LeftEye``/``RightEye``),
52 x ``/VMC/Ext/Blend/Val name value``, ``/VMC/Ext/Blend/Apply``, ``/VMC/Ext/OK 1`` and
``/VMC/Ext/T seconds``, as the VMC samples send them. Bone poses are local, in Unity's axes
(conventions.to_unity). Encoding uses python-osc's builders.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.parsing import osc_types
from pythonosc.osc_message_builder import OscMessageBuilder

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.conventions import gaze_quaternion, to_unity
from avatar_bridge.adapters.registry import AdapterEntry
from avatar_bridge.adapters.sender import UdpSender
from avatar_bridge.regions import neutralise_untracked
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

# Perfect-sync BlendShapeClip names: the ARKit names with an upper-case first letter, as VRM models
# made for perfect sync (HANA_Tool, VMagicMirror) name their clips ("EyeBlinkLeft", "JawOpen", ...).
VMC_PERFECT_SYNC_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES)


@dataclass(frozen=True)
class VmcConfig:
    host: str = "127.0.0.1"
    port: int = 39539           # VMC performer -> marionette default
    rate_hz: float = 60.0
    eye_bones: bool = True      # also send LeftEye/RightEye bone rotations from gaze
    arkit_names: bool = False   # send "eyeBlinkLeft" instead of "EyeBlinkLeft" (for receivers that want ARKit case)


def _message(address: str, *args) -> OscMessageBuilder:
    msg = OscMessageBuilder(address)
    for a in args:
        msg.add_arg(a)
    return msg


def _bone(name: str, q, p=(0.0, 0.0, 0.0)) -> OscMessageBuilder:
    return _message("/VMC/Ext/Bone/Pos", name, float(p[0]), float(p[1]), float(p[2]),
                    float(q[0]), float(q[1]), float(q[2]), float(q[3]))


def vmc_messages(state: FaceState, t: float, names: tuple[str, ...] = VMC_PERFECT_SYNC_NAMES,
                 eye_bones: bool = True) -> list[OscMessageBuilder]:
    """The ordered VMC messages for one frame (pure). VMC has no "not tracked": shapes, eyes and
    head of untracked regions (headset mode) go out neutral (``regions.neutralise_untracked``)."""
    state = neutralise_untracked(state)
    head_q, _ = to_unity(state.head_rotation, state.head_position)
    msgs = [_message("/VMC/Ext/Root/Pos", "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
            # Head local position 0: receivers take the rotation; the model keeps its own neck length.
            _bone("Head", head_q)]
    if eye_bones:
        for bone, (yaw, pitch) in (("LeftEye", state.gaze_left), ("RightEye", state.gaze_right)):
            eye_q, _ = to_unity(gaze_quaternion(yaw, pitch), (0.0, 0.0, 0.0))
            msgs.append(_bone(bone, eye_q))
    values = np.asarray(state.blendshapes, np.float32)
    msgs.extend(_message("/VMC/Ext/Blend/Val", name, float(v)) for name, v in zip(names, values))
    msgs.append(_message("/VMC/Ext/Blend/Apply"))
    msgs.append(_message("/VMC/Ext/OK", 1))
    msgs.append(_message("/VMC/Ext/T", float(t)))
    return msgs


def encode_vmc_bundle(state: FaceState, t: float, names: tuple[str, ...] = VMC_PERFECT_SYNC_NAMES,
                      eye_bones: bool = True) -> bytes:
    """One frame as one OSC bundle (timetag "immediately")."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    for m in vmc_messages(state, t, names, eye_bones):
        bundle.add_content(m.build())
    return bundle.build().dgram


_BUNDLE_HEAD = b"#bundle\x00" + osc_types.write_date(IMMEDIATELY)


class VmcBundleEncoder:
    """Byte-identical to ``encode_vmc_bundle`` but ~10x faster: the 52 Blend/Val messages differ
    only in their last 4 bytes, so their prefixes are built once with python-osc and reused."""

    def __init__(self, names: tuple[str, ...] = VMC_PERFECT_SYNC_NAMES, eye_bones: bool = True) -> None:
        self.names, self.eye_bones = names, eye_bones
        blend = [_message("/VMC/Ext/Blend/Val", n, 0.0).build().dgram for n in names]
        self._blend_prefix = [struct.pack(">i", len(d)) + d[:-4] for d in blend]
        self._tail = b"".join(struct.pack(">i", len(d)) + d for d in
                              (_message("/VMC/Ext/Blend/Apply").build().dgram, _message("/VMC/Ext/OK", 1).build().dgram))
        t = _message("/VMC/Ext/T", 0.0).build().dgram
        self._t_prefix = struct.pack(">i", len(t)) + t[:-4]

    def encode(self, state: FaceState, t: float) -> bytes:
        state = neutralise_untracked(state)
        head = [m.build().dgram for m in vmc_messages(state, t, (), self.eye_bones)[:-3]]
        values = np.asarray(state.blendshapes, ">f4").tobytes()
        parts = [_BUNDLE_HEAD]
        parts += [struct.pack(">i", len(d)) + d for d in head]
        parts += [pre + values[4 * i:4 * i + 4] for i, pre in enumerate(self._blend_prefix)]
        parts += [self._tail, self._t_prefix, struct.pack(">f", t)]
        return b"".join(parts)


class VmcSender(UdpSender):
    """Streams FaceStates to a VMC marionette (VSeeFace, Warudo, VNyan, VMC, ...)."""

    name = "vmc"

    def __init__(self, config: VmcConfig = VmcConfig()) -> None:
        super().__init__(config.host, config.port, config.rate_hz, log)
        self.config = config
        self.names = tuple(ARKIT_BLENDSHAPES) if config.arkit_names else VMC_PERFECT_SYNC_NAMES
        self.encoder = VmcBundleEncoder(self.names, config.eye_bones)
        self._t0 = time.monotonic()

    def encode(self, state: FaceState, now: float) -> list[bytes]:
        return [self.encoder.encode(state, now - self._t0)]


ADAPTER = AdapterEntry("vmc", VmcConfig, VmcSender, summary="VMC (VSeeFace, Warudo, VNyan)",
                       receiver_hint="VSeeFace/Warudo/VNyan: enable the VMC receiver on port {port}")
