"""The daemon's ``camera.frame`` control command: the newest camera frame as a JPEG with the tracked
landmarks, for the preview page's camera view.

Nothing is copied or encoded per frame (the frame loop only keeps references); the JPEG is made
when a client asks, and only on a loopback control socket, so camera images never leave the
machine through avatar-bridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from avatar_bridge.bus.sockets import is_loopback_endpoint
from avatar_bridge.types import FaceObservation, Frame


class CameraViewError(RuntimeError):
    """A camera frame that cannot be served; the text says why and what to do."""


@dataclass(frozen=True)
class CameraViewConfig:
    max_width: int = 480       # frames are scaled down to this width: a preview, not a recording
    jpeg_quality: int = 75


class CameraView:
    """Keeps the newest frame and its observation (``keep``, from the frame loop) and serves them."""

    def __init__(self, config: CameraViewConfig, control_endpoint: str) -> None:
        self.config = config
        self.loopback = is_loopback_endpoint(control_endpoint)
        self.control_endpoint = control_endpoint
        self._frame: Frame | None = None
        self._observation: FaceObservation | None = None

    def keep(self, frame: Frame, observation: FaceObservation | None) -> None:
        self._frame, self._observation = frame, observation

    def frame(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.loopback:
            raise CameraViewError(f"camera frames are only served on a loopback control socket, not "
                                  f"{self.control_endpoint}; run with --control tcp://127.0.0.1:5571")
        frame, observation = self._frame, self._observation
        if frame is None:
            return {"jpeg": None, "frame": -1, "face": False, "landmarks": []}
        image = frame.image
        h, w = image.shape[:2]
        if w > self.config.max_width:
            image = cv2.resize(image, (self.config.max_width, round(h * self.config.max_width / w)),
                               interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise CameraViewError(f"frame {frame.index} could not be encoded as JPEG")
        # Landmarks as a flat [x0, y0, x1, y1, ...] list, normalised to the image (so to any scale).
        landmarks = [] if observation is None or observation.frame is not frame or observation.landmarks is None else \
            np.asarray(observation.landmarks[:, :2], np.float32).ravel().round(4).tolist()
        return {"jpeg": jpeg.tobytes(), "frame": frame.index, "width": image.shape[1], "height": image.shape[0],
                "face": bool(landmarks), "landmarks": landmarks}

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"camera.frame": self.frame}
