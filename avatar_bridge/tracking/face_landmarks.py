"""Constant tables for MediaPipe's 478-point face mesh: the indices the estimators read, and the
canonical 3D face for head pose.

Index names follow the performer: ``R_EYE_*`` is the performer's right eye, which appears on the
image's left in an unmirrored camera.
"""

from __future__ import annotations

import functools

import numpy as np

# Eyes: corners and three upper/lower lid pairs per eye.
R_EYE_OUTER, R_EYE_INNER = 33, 133
L_EYE_OUTER, L_EYE_INNER = 263, 362
R_EYE_LIDS = ((160, 144), (159, 145), (158, 153))
L_EYE_LIDS = ((387, 373), (386, 374), (385, 380))
# Iris centres (refine_landmarks=True adds 468..477).
R_IRIS, L_IRIS = 468, 473

# Mouth.
LIP_INNER_TOP, LIP_INNER_BOTTOM = 13, 14
R_MOUTH_CORNER, L_MOUTH_CORNER = 61, 291

# Brows (inner, middle, outer) per side.
R_BROW = (107, 105, 70)
L_BROW = (336, 334, 300)


def load_canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """(points (478, 3) metres in head axes, indices of the landmarks that stay put under expressions).

    Built by ``python -m training.make_canonical_face`` from ICT-FaceKit renders (MIT, USC ICT):
    every landmark triangulated from 21 known views of the neutral head, so it matches what
    MediaPipe reports on a face, not a hand-picked vertex table.
    """
    data = _canonical_asset()
    return data["points"].astype(np.float64), data["rigid"].astype(np.int64)


@functools.cache
def _canonical_asset() -> dict[str, np.ndarray]:
    """The packaged asset, read once per process (the pose solver, the frontaliser and the mirror
    twins all start from it); callers copy what they keep."""
    from importlib import resources

    with resources.files("avatar_bridge").joinpath("assets/canonical_face.npz").open("rb") as fh:
        with np.load(fh) as data:
            return dict(data)


class Frontaliser:
    """Turns landmarks to face the camera: (..., 478, 3) image-normalised MediaPipe points ->
    (..., 478, 3) in head axes (x towards the performer's left, y up, z towards the camera),
    origin between the outer eye corners, unit = the outer eye-corner span.

    MediaPipe's (x, y, z) is close to a weak-perspective 3D face. Fitting the canonical face's
    rigid points to it (Kabsch, with scale) gives the face's apparent rotation without knowing
    the camera's focal length, and undoing it makes distances on the face nearly independent of
    where the head points; measured in the raw image they shrink and grow with pitch and yaw.
    Works on one frame or a batch (leading axes), so training and runtime share it.
    """

    def __init__(self) -> None:
        canonical, self.rigid = load_canonical_face()
        rigid_points = canonical[self.rigid]
        self._rigid_centred = rigid_points - rigid_points.mean(0)   # centred once, not per frame

    def __call__(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        p = np.asarray(landmarks, np.float64) * np.array([width, -height, -width])   # image -> camera axes
        b = p[..., self.rigid, :]
        b = b - b.mean(-2, keepdims=True)
        u, _, vt = np.linalg.svd(np.swapaxes(b, -1, -2) @ self._rigid_centred)
        d = np.sign(np.linalg.det(u @ vt))
        u[..., :, 2] *= d[..., None]                                # no reflections
        rot = u @ vt                                                # head axes -> camera axes
        p = (p - p[..., [R_EYE_OUTER, L_EYE_OUTER], :].mean(-2, keepdims=True)) @ rot   # row-wise R^T p
        span = np.linalg.norm(p[..., L_EYE_OUTER, :] - p[..., R_EYE_OUTER, :], axis=-1)
        return (p / np.maximum(span, 1e-9)[..., None, None]).astype(np.float32)


def landmark_mirror_permutation() -> np.ndarray:
    """(478,) index of each landmark's mirror twin (33 <-> 263, 13 <-> 13, ...), matched on the
    canonical face and stored with it (``training.make_canonical_face.mirror_twins``)."""
    return _canonical_asset()["twin"].astype(np.intp)
