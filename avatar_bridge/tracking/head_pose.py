"""Head pose from landmarks: cv2.solvePnP against the canonical 3D face (face_landmarks.load_canonical_face)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_bridge.tracking import face_landmarks as lm
from avatar_bridge.conventions import quat_from_rotvec, quat_multiply

# OpenCV's camera looks down +z with y down; ours has y up and z towards the viewer.
_CV_TO_OURS = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class HeadPoseConfig:
    # Focal length as a multiple of image width: 0.9 is a typical webcam's ~60 degree horizontal view.
    focal_per_width: float = 0.9


@dataclass(frozen=True)
class HeadPose:
    rotation: tuple[float, float, float, float]   # quaternion (x, y, z, w), head -> camera axes
    position: tuple[float, float, float]          # metres, camera axes
    matrix: np.ndarray                            # 3x3 rotation, head -> camera axes


def camera_matrix(width: int, height: int, config: HeadPoseConfig) -> np.ndarray:
    f = config.focal_per_width * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


class HeadPoseSolver:
    """Solves the head pose per frame, seeded with the previous solution for stability."""

    def __init__(self, config: HeadPoseConfig = HeadPoseConfig()) -> None:
        self.config = config
        canonical, self.rigid = lm.load_canonical_face()
        self.rigid_points = canonical[self.rigid]          # (K, 3) metres, head axes
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self._last = None

    def solve(self, landmarks: np.ndarray, width: int, height: int) -> HeadPose:
        image_pts = (landmarks[self.rigid, :2] * np.array([width, height])).astype(np.float64)
        k = camera_matrix(width, height, self.config)
        if self._last is None:
            ok, rvec, tvec = cv2.solvePnP(self.rigid_points, image_pts, k, None, flags=cv2.SOLVEPNP_SQPNP)
        else:
            rvec, tvec = (a.copy() for a in self._last)
            ok, rvec, tvec = cv2.solvePnP(self.rigid_points, image_pts, k, None, rvec, tvec, True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
            self._last = None
            return HeadPose((0.0, 0.0, 0.0, 1.0), (0.0, 0.0, -0.5), np.eye(3))
        self._last = (rvec, tvec)
        r_cv, _ = cv2.Rodrigues(rvec)
        r = _CV_TO_OURS @ r_cv
        p = _CV_TO_OURS @ tvec[:, 0]
        # The quaternion straight from the rotation vector (scipy's from_matrix costs ~0.4 ms a
        # frame); _CV_TO_OURS is the half turn about x, quaternion (1, 0, 0, 0).
        q = np.array(quat_multiply((1.0, 0.0, 0.0, 0.0), quat_from_rotvec(rvec[:, 0].tolist())))
        if q[3] < 0:  # keep w >= 0 so consecutive frames do not flip sign
            q = -q
        return HeadPose(tuple(float(x) for x in q), tuple(float(x) for x in p), r)
