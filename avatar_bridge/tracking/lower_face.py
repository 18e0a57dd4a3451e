"""The lower-face region in headset mode: where it is, and the square crop the lower-face network reads.

Training (``training/headset_data.py``) places its crops from three true points of ICT-FaceKit
renders: the jaw edges level with the nose base and the nose base (Multi-PIE points 2, 14, 33,
``box_from_points``). At run time ``box_from_landmarks`` places the same box from MediaPipe's mesh,
hanging it from the upper lip rather than the nose base, which MediaPipe only guesses under a visor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe face-mesh indices of the jaw edge level with the nose base (performer's right, left)
# and of the nose base (subnasale); measured against the renders' Multi-PIE points 2, 14, 33.
MP_JAW_RIGHT, MP_JAW_LEFT, MP_NOSE_BASE = 93, 323, 2
MP_UPPER_LIP = 0               # the upper lip's outer centre (Multi-PIE 51); it stays put as the jaw opens
MP_BOX_SIDE = 1.14             # box side / MediaPipe's jaw width (see box_from_landmarks)
MP_LIP_TO_TOP = 0.20           # the box top above the upper lip, in box sides (0.195 open, 0.208 visor)

CROP_SIZE = 64                 # side of the square crop the lower-face network reads (pixels)
# The box, in units of the jaw width w at the nose base: side 1.1 w, top 0.1 of the side above the
# nose base, so the chin stays inside with the jaw wide open.
BOX_SIDE = 1.1
BOX_TOP = 0.1


@dataclass(frozen=True)
class Box:
    """An axis-aligned image region in pixels (x, y = top-left corner)."""

    x: float
    y: float
    w: float
    h: float

    @staticmethod
    def parse(text: str) -> "Box":
        """``"x,y,w,h"`` in pixels, as ``--roi`` takes it; a ValueError names what is wrong."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            x, y, w, h = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"--roi wants four numbers x,y,w,h in pixels, got {text!r}") from None
        if w <= 0 or h <= 0:
            raise ValueError(f"--roi {text!r}: width and height must be positive")
        return Box(x, y, w, h)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


def box_from_points(jaw_right: np.ndarray, jaw_left: np.ndarray, nose_base: np.ndarray) -> Box:
    """The lower-face box from three pixel points (see the module docstring)."""
    width = float(np.linalg.norm(np.asarray(jaw_left, np.float64) - np.asarray(jaw_right, np.float64)))
    side = BOX_SIDE * max(width, 1.0)
    cx = (float(jaw_right[0]) + float(jaw_left[0])) / 2
    top = float(nose_base[1]) - BOX_TOP * side
    return Box(cx - side / 2, top, side, side)


def box_from_landmarks(landmarks: np.ndarray, width: int, height: int) -> Box:
    """The lower-face box from MediaPipe's normalised (478, 3) landmarks, placed to match
    ``box_from_points`` on the training renders' true points.

    Under a visor MediaPipe guesses the nose base and shrinks the jaw (measured on 120 occluded
    ICT renders: the nose-base box sat 8 % of its side too low, spread 14 %), so the box hangs from
    the upper lip's centre instead (spread 5.5 %) and its side is the jaw width times
    ``MP_BOX_SIDE`` (1.09 on open faces, 1.19 under a visor: the middle)."""
    px = np.asarray(landmarks[:, :2], np.float64) * (width, height)
    side = MP_BOX_SIDE * max(float(np.linalg.norm(px[MP_JAW_LEFT] - px[MP_JAW_RIGHT])), 1.0)
    cx = (px[MP_JAW_RIGHT, 0] + px[MP_JAW_LEFT, 0]) / 2
    top = px[MP_UPPER_LIP, 1] - MP_LIP_TO_TOP * side
    return Box(float(cx - side / 2), float(top), side, side)


def crop_box(image: np.ndarray, box: Box, size: int = CROP_SIZE) -> np.ndarray:
    """``box`` resampled to a ``size`` x ``size`` crop (a non-square box is stretched, as a
    mouth camera's 4:3 frame is); parts outside the image repeat the border."""
    m = np.array([[size / box.w, 0.0, -box.x * size / box.w],
                  [0.0, size / box.h, -box.y * size / box.h]], np.float64)
    interp = cv2.INTER_AREA if box.w > 2 * size else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:   # warpAffine has no area filter: shrink first, then place
        scale = 2 * size / box.w
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        m = m / np.array([[scale, scale, 1.0], [scale, scale, 1.0]])
        return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
