"""Bus wire schema v1: pure encode/decode of the msgpack payloads (docs/protocol.md).

Kept free of sockets so the same functions serve the daemon, ``listen``, the recorder and tests.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, NAMES_HASH
from avatar_bridge.regions import REGIONS
from avatar_bridge.types import FaceState

SCHEMA_VERSION = 1
TOPIC_FACE = b"face"
TOPIC_STATUS = b"status"
TOPIC_TEXTURE = b"texture"


class WireError(ValueError):
    """A payload that is not a valid schema-v1 message; the text says which field is wrong."""


def face_to_message(state: FaceState, seq: int) -> dict[str, Any]:
    msg = {
        "v": SCHEMA_VERSION,
        "seq": int(seq),
        "t": float(state.t_capture),
        "tp": float(state.t_publish),
        "frame": int(state.frame_index),
        "bs": [float(x) for x in np.asarray(state.blendshapes, np.float32)],
        "names_hash": NAMES_HASH,
        "head": {"q": [float(x) for x in state.head_rotation], "p": [float(x) for x in state.head_position]},
        "gaze": {"l": [float(x) for x in state.gaze_left], "r": [float(x) for x in state.gaze_right]},
        "conf": float(state.confidence),
        "present": bool(state.face_present),
    }
    if state.untracked:
        # Optional (schema v1 grew by it): {region: tracked?} for every region, sent only when some
        # region is untracked, so a whole-face daemon's payload is what it always was.
        msg["tracked"] = {r: r not in state.untracked for r in REGIONS}
    return msg


# Times stay float64 (a float32 monotonic clock loses milliseconds after a day of uptime);
# every other float goes out as float32, which is all a blendshape or an angle needs.
_FLOAT64_KEYS = ("t", "tp")


def encode_face(state: FaceState, seq: int) -> bytes:
    """Pack one FaceState as a schema-v1 ``face`` payload (times float64, other floats float32)."""
    msg = face_to_message(state, seq)
    packer = msgpack.Packer(use_single_float=True)
    out = [packer.pack_map_header(len(msg))]
    for key, value in msg.items():
        out.append(packer.pack(key))
        out.append(b"\xcb" + struct.pack(">d", value) if key in _FLOAT64_KEYS else packer.pack(value))
    return b"".join(out)


def _floats(value: Any, n: int, field: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise WireError(f"field {field!r} must be a list of {n} numbers, got {value!r:.60}")
    out = []
    for x in value:
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
            raise WireError(f"field {field!r} holds a non-finite or non-number value {x!r}")
        out.append(float(x))
    return out


def validate_face(msg: Any) -> dict[str, Any]:
    """Check a decoded ``face`` map against schema v1; return it, or raise WireError naming the field.

    Unknown keys are allowed (readers ignore them so the schema can grow).
    """
    if not isinstance(msg, dict):
        raise WireError(f"a face message must be a map, got {type(msg).__name__}")
    if msg.get("v") != SCHEMA_VERSION:
        raise WireError(f"unsupported schema version {msg.get('v')!r}; this reader speaks v{SCHEMA_VERSION}")
    for key, kind in (("seq", int), ("t", (int, float)), ("names_hash", int), ("conf", (int, float)), ("present", bool)):
        if key not in msg:
            raise WireError(f"missing field {key!r}")
        if not isinstance(msg[key], kind):
            raise WireError(f"field {key!r} has type {type(msg[key]).__name__}")
    if msg["names_hash"] != NAMES_HASH:
        raise WireError("names_hash does not match this reader's ARKit name table")
    _floats(msg.get("bs"), len(ARKIT_BLENDSHAPES), "bs")
    head, gaze = msg.get("head"), msg.get("gaze")
    if not isinstance(head, dict) or not isinstance(gaze, dict):
        raise WireError("fields 'head' and 'gaze' must be maps")
    _floats(head.get("q"), 4, "head.q")
    _floats(head.get("p"), 3, "head.p")
    _floats(gaze.get("l"), 2, "gaze.l")
    _floats(gaze.get("r"), 2, "gaze.r")
    tracked = msg.get("tracked")
    if tracked is not None and not (isinstance(tracked, dict)
                                    and all(isinstance(k, str) and isinstance(v, bool) for k, v in tracked.items())):
        raise WireError("field 'tracked' must map region names to true/false")
    return msg


def untracked_regions(msg: dict[str, Any]) -> frozenset[str]:
    """The regions a validated message marks untracked (none when it has no ``tracked`` key);
    region names this reader does not know are ignored, so the region list can grow."""
    tracked = msg.get("tracked") or {}
    return frozenset(r for r, ok in tracked.items() if not ok and r in REGIONS)


def decode_face_message(payload: bytes) -> dict[str, Any]:
    """Unpack and validate a ``face`` payload, returning the map."""
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise WireError(f"payload is not msgpack: {exc}") from exc
    return validate_face(msg)


def message_to_face(msg: dict[str, Any]) -> FaceState:
    return FaceState(
        blendshapes=np.asarray(msg["bs"], np.float32),
        head_rotation=tuple(msg["head"]["q"]),
        head_position=tuple(msg["head"]["p"]),
        gaze_left=tuple(msg["gaze"]["l"]),
        gaze_right=tuple(msg["gaze"]["r"]),
        confidence=float(msg["conf"]),
        face_present=bool(msg["present"]),
        t_capture=float(msg["t"]),
        t_publish=float(msg.get("tp", 0.0)),
        frame_index=int(msg.get("frame", -1)),
        untracked=untracked_regions(msg),
    )


def decode_face(payload: bytes) -> tuple[int, FaceState]:
    """Unpack a ``face`` payload into (seq, FaceState)."""
    msg = decode_face_message(payload)
    return msg["seq"], message_to_face(msg)


def encode_map(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_single_float=False)


def decode_map(payload: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # see decode_face_message
        raise WireError(f"payload is not msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireError(f"expected a map, got {type(obj).__name__}")
    return obj
