"""A head pose from outside the camera (a VR headset's HMD pose, engine_plugins/openvr/), published
as the face state's head rotation while it keeps arriving.

A camera under or beside a headset sees half a face, so its PnP pose is poor; the HMD's own tracking
is exact. The plugin sends ``{"cmd": "head.set", "q": [x, y, z, w], "source": "openvr"}`` on the
control socket: the head's rotation in the tracking space (head axes as in FaceState: x = the
performer's left, y up, z out of the face). Published is ``offset * q``, where the camera-to-HMD
``offset`` is set by ``head.recenter`` (the performer looks straight at the camera; the published
head is then at rest) and, until the first recenter, by the first pose received. A pose older than
``max_age_s`` is stale, so a plugin that quits hands the head back to the camera within a moment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from scipy.spatial.transform import Rotation

from avatar_bridge.types import FaceState


@dataclass(frozen=True)
class ExternalHeadConfig:
    max_age_s: float = 0.5       # an HMD pose older than this is stale: the camera's pose is used again


def _quaternion(q: Any) -> tuple[float, float, float, float] | None:
    if (not isinstance(q, (list, tuple)) or len(q) != 4
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in q)):
        return None
    norm = math.sqrt(sum(float(c) ** 2 for c in q))
    return None if norm < 1e-6 else tuple(float(c) / norm for c in q)


class ExternalHead:
    """Holds the newest external head rotation and the recentre offset; applies them to outgoing states."""

    def __init__(self, config: ExternalHeadConfig = ExternalHeadConfig(), clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._raw: Rotation | None = None
        self._offset: Rotation | None = None
        self._at = -math.inf
        self.source: str | None = None
        self.received = 0
        self.recentered = 0

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        q = _quaternion(request.get("q"))
        if q is None:
            return {"ok": False, "error": "head.set needs 'q': a quaternion [x, y, z, w] of four finite numbers, not all 0"}
        self._raw = Rotation.from_quat(q)
        if self._offset is None:          # no recenter yet: the first pose counts as "facing the camera"
            self._offset = self._raw.inv()
        self._at = self._clock()
        self.source = str(request.get("source", "external"))
        self.received += 1
        return {"ok": True}

    def recenter(self, request: dict[str, Any]) -> dict[str, Any]:
        """The performer faces the camera now: the current pose becomes the published rest pose."""
        if self._raw is None:
            return {"ok": False, "error": "head.recenter: no head pose received yet (is the OpenVR companion running?)"}
        self._offset = self._raw.inv()
        self.recentered += 1
        return {"ok": True, "recentered": self.recentered}

    def clear(self, request: dict[str, Any]) -> dict[str, Any]:
        self._raw, self._offset, self.source = None, None, None
        return {"ok": True}

    def active(self) -> bool:
        return self._raw is not None and self._clock() - self._at <= self.config.max_age_s

    def rotation(self) -> tuple[float, float, float, float]:
        """The head rotation that is published now (camera axes), ``offset * pose``."""
        return tuple(float(c) for c in (self._offset * self._raw).as_quat())

    def apply(self, state: FaceState) -> FaceState:
        """``state`` with the external head rotation (and "head" tracked) while one is fresh."""
        if not self.active():
            return state
        return replace(state, head_rotation=self.rotation(), untracked=state.untracked - {"head"})

    def status(self) -> dict[str, Any]:
        return {"source": self.source if self.active() else "camera", "received": self.received,
                "recentered": self.recentered}

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"head.set": self.set, "head.recenter": self.recenter, "head.clear": self.clear}
