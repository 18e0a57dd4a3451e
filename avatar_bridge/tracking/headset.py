"""Headset-mode tracking: the lower face found with the upper face covered.

In order of preference, per frame: a mouth camera's whole frame (it sees nothing else); the face mesh
when MediaPipe still fits it under the visor (the box then follows the head); the last fitted box,
held for ``hold_frames``; the region the user set (``--roi``), for when the tracker cannot fit the
face at all. None of these: no face this frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar_bridge.tracking.lower_face import CROP_SIZE, Box, box_from_landmarks, crop_box
from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
from avatar_bridge.types import Frame, LowerFaceObservation


@dataclass(frozen=True)
class HeadsetTrackerConfig:
    roi: tuple[float, float, float, float] | None = None   # x, y, w, h pixels: where the lower face is
    mouth_camera: bool = False      # the whole frame is the lower face seen from below: no face mesh
    hold_frames: int = 15           # keep a fitted box this many frames after the mesh is lost (no ROI)
    crop_size: int = CROP_SIZE
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(min_detection_confidence=0.3,
                                                                         min_tracking_confidence=0.3))


class HeadsetTracker:
    """``track(frame)`` -> LowerFaceObservation or None (see the module docstring)."""

    def __init__(self, config: HeadsetTrackerConfig = HeadsetTrackerConfig()) -> None:
        self.config = config
        self._roi = Box(*config.roi) if config.roi is not None else None
        # A mouth camera never shows a whole face, so MediaPipe is not even loaded.
        self._mesh = None if config.mouth_camera else FaceTracker(config.tracker)
        self._held: Box | None = None
        self._held_for = 0

    def set_roi(self, roi: tuple[float, float, float, float] | None) -> None:
        """Move (or drop) the user's region while running, e.g. redrawn in a preview."""
        self._roi = Box(*roi) if roi is not None else None

    def track(self, frame: Frame) -> LowerFaceObservation | None:
        image = frame.image
        h, w = image.shape[:2]
        if self._mesh is None:
            box = Box(0.0, 0.0, float(w), float(h))
            return LowerFaceObservation(frame, crop_box(image, box, self.config.crop_size), box.as_tuple(), "frame")
        face = self._mesh.track(frame)
        if face is not None:
            box = box_from_landmarks(face.landmarks, w, h)
            self._held, self._held_for = box, 0
            return LowerFaceObservation(frame, crop_box(image, box, self.config.crop_size), box.as_tuple(), "face",
                                        face.landmarks, face.confidence)
        if self._held is not None and self._held_for < self.config.hold_frames:
            self._held_for += 1
            box = self._held
            return LowerFaceObservation(frame, crop_box(image, box, self.config.crop_size), box.as_tuple(), "held",
                                        confidence=0.5)
        if self._roi is not None:
            return LowerFaceObservation(frame, crop_box(image, self._roi, self.config.crop_size),
                                        self._roi.as_tuple(), "roi", confidence=0.5)
        return None

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()

    def __enter__(self) -> "HeadsetTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
