"""The lower-face region in headset mode: where it is, and the square crop the lower-face network reads.

Training (``training/headset_data.py``) places its crops from three true points of ICT-FaceKit
renders: the jaw edges level with the nose base and the nose base (Multi-PIE points 2, 14, 33,
``box_from_points``); where the face mesh fits, it also cuts crops the way run time does
(``box_from_landmarks``, from MediaPipe's mesh on the same renders), so the network learns that box as
it is, MediaPipe's errors under a visor included.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe face-mesh indices of the jaw edge level with the nose base (performer's right, left)
# and of the nose base (subnasale); measured against the renders' Multi-PIE points 2, 14, 33.
MP_JAW_RIGHT, MP_JAW_LEFT, MP_NOSE_BASE = 93, 323, 2
# MediaPipe's outer lip ring (Multi-PIE 48-59 run along the same ring).
MP_OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
MP_BOX_SIDE = 1.2              # box side / MediaPipe's jaw width (see box_from_landmarks)
MP_MOUTH_DOWN = 0.4            # the mouth's centre sits this many box sides below the box top

# The Multi-PIE 68 points the lower-face point network places (training/train_lower_points.py): the jaw
# line (0-16), the nose base (31-35) and the lips (48-67); and, as indices into them, the points the
# mouth does not move (upper jaw line at both ends, nose base) and the jaw line's two upper ends.
LOWER_POINTS = np.r_[0:17, 31:36, 48:68]
# Multi-PIE point k's mirror twin is MIRROR_68[k]; LOWER_POINTS_FLIP[j]: the column of point j's twin.
MIRROR_68 = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, 45:41:-1, 47, 46, 39:35:-1, 41, 40,
                  54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]
LOWER_POINTS_FLIP = np.array([list(LOWER_POINTS).index(MIRROR_68[k]) for k in LOWER_POINTS])
STILL_POINTS = np.r_[0:4, 13:22]
JAW_RIGHT_END, JAW_LEFT_END = np.r_[0:4], np.r_[13:17]

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
    """The lower-face box from MediaPipe's normalised (478, 3) landmarks: centred across on the
    mouth, its top ``MP_MOUTH_DOWN`` sides above the mouth's centre, its side ``MP_BOX_SIDE`` times
    the jaw width.

    Why the mouth: under a visor MediaPipe guesses the upper face (and the nose base) from the lower,
    but it still sees the lips. Measured on 7,500 meshes fitted to ICT renders (6,500 under a painted
    visor): the box hung from the upper lip (v0.1) left a lip point outside the box in 18 % of visor
    frames (3 % without one), as MediaPipe shrinks the jaw and lowers the upper lip as the mouth
    opens; this box loses one in 5 % (0.1 % without). The box still moves with the mouth (the
    mouth's centre drops as the jaw opens), so training cuts its crops with this same function."""
    px = np.asarray(landmarks[:, :2], np.float64) * (width, height)
    side = MP_BOX_SIDE * max(float(np.linalg.norm(px[MP_JAW_LEFT] - px[MP_JAW_RIGHT])), 1.0)
    cx, cy = px[list(MP_OUTER_LIPS)].mean(0)
    return Box(float(cx - side / 2), float(cy - MP_MOUTH_DOWN * side), side, side)


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
