"""Face tracking: MediaPipe face mesh with iris (478 landmarks) and an eye-aligned face crop."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from avatar_bridge.tracking import face_landmarks as lm
from avatar_bridge.types import FaceObservation, Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    crop_size: int = 96                  # side of the aligned crop handed to the estimator (pixels)
    static_image_mode: bool = False      # True: detect on every frame (images); False: track (video)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    # Where the crop puts the eyes and mouth, as fractions of crop_size; chosen so the whole face
    # from brows to chin fits with a margin at moderate head turns.
    eye_y: float = 0.36
    mouth_y: float = 0.74
    eye_span: float = 0.40


def crop_template(config: TrackerConfig) -> np.ndarray:
    """Canonical crop positions of (performer's right eye, left eye, mouth centre), pixels."""
    s = config.crop_size
    half = config.eye_span / 2
    return np.array([[(0.5 - half) * s, config.eye_y * s],
                     [(0.5 + half) * s, config.eye_y * s],
                     [0.5 * s, config.mouth_y * s]], np.float32)


def align_crop(image: np.ndarray, landmarks_px: np.ndarray, config: TrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-warp the face so the eyes and mouth land on fixed crop positions.

    Returns (crop, 2x3 transform image px -> crop px). A similarity (not full affine) keeps the
    face's proportions, so a wide-open mouth still looks open in the crop.
    """
    r_eye = landmarks_px[[lm.R_EYE_OUTER, lm.R_EYE_INNER], :2].mean(0)
    l_eye = landmarks_px[[lm.L_EYE_OUTER, lm.L_EYE_INNER], :2].mean(0)
    mouth = landmarks_px[[lm.R_MOUTH_CORNER, lm.L_MOUTH_CORNER], :2].mean(0)
    # The image shows the performer's right eye on the left, like the template.
    src = np.array([r_eye, l_eye, mouth], np.float32)
    m, _ = cv2.estimateAffinePartial2D(src, crop_template(config), method=cv2.LMEDS)
    if m is None:  # degenerate points; fall back to a box around the landmarks
        x0, y0 = landmarks_px[:, :2].min(0)
        x1, y1 = landmarks_px[:, :2].max(0)
        scale = config.crop_size / max(x1 - x0, y1 - y0, 1.0)
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
    crop = cv2.warpAffine(image, m, (config.crop_size, config.crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m.astype(np.float32)


class FaceTracker:
    """Finds one face per frame with MediaPipe; ``track`` returns None when there is none.

    Use as a context manager (or call ``close``) to free MediaPipe's graph.
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        import mediapipe as mp  # imported here: it is slow to import and only this stage needs it

        self.config = config
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=config.static_image_mode, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence)

    def track(self, frame: Frame) -> FaceObservation | None:
        image = np.ascontiguousarray(frame.image)
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        landmarks = np.array([(p.x, p.y, p.z) for p in points], np.float32)
        h, w = image.shape[:2]
        px = landmarks * np.array([w, h, w], np.float32)
        crop, transform = align_crop(image, px, self.config)
        return FaceObservation(frame, landmarks, crop, transform, self._confidence(landmarks))

    @staticmethod
    def _confidence(landmarks: np.ndarray) -> float:
        # The legacy face-mesh graph does not expose its presence score; it drops faces below
        # min_tracking_confidence itself. What we can still see is how much of the face lies in
        # the frame, which is what degrades the estimate near the borders.
        inside = np.all((landmarks[:, :2] >= 0.0) & (landmarks[:, :2] <= 1.0), axis=1)
        return float(inside.mean())

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
