"""What the network reads from one tracked frame, in numpy + OpenCV only (shared by training and
runtime): ``FeatureExtractor`` turns a tracker observation into (features, eye patches).

Features: the landmarks moved into the aligned crop's frame with ``crop_transform``, which removes
image position, scale and roll, centred and scaled to about [-1, 1] (z scaled the same way); the
same landmarks turned to face the camera (``face_landmarks.Frontaliser``), which also removes yaw
and pitch, so a lid or lip gap reads the same however the head is turned; the geometry baseline's
distances measured on them (eye aspect ratios, lip gap, mouth width, corner lift, brow heights),
which a small MLP on standardised coordinates does not easily rebuild (docs/model_card.md says
why they were added); and the PnP head rotation (first two columns of its matrix, the continuous 6D
form) so the network can correct it rather than rebuild it.

Eye patches: each eye cut from the crop, levelled on its corners and scaled so the eye spans the
same width, the performer's right eye mirrored to look like the left. One small CNN reads both,
so what it learns about a lid on one side serves the other, and a 96-pixel crop's 15-pixel eye
is not lost in the whole-face CNN's pooling.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_bridge.tracking import face_landmarks as lm
from avatar_bridge.conventions import quat_from_rotvec
from avatar_bridge.estimators.geometry import GeometryEstimator
# The layout below is the contract stored with the weights: change one, bump FEATURES_VERSION there.
from blendshape_model.contract import CROP_SIZE, EYE_PATCH, FEATURE_DIM, GEOMETRY_FEATURES, N_LANDMARKS  # noqa: F401

_EYE_FILL = 0.625                      # the eye's corner-to-corner span as a fraction of the patch width
_EYE_LIFT = 0.1                        # patch centre above the corner line (in corner spans): the lid crease


def crop_points(landmarks: np.ndarray, crop_transform: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(478, 3) image-normalised landmarks -> (478, 3) float64 crop pixels (z in the same scale).

    ``image_size`` is (width, height) of the frame the landmarks were found in.
    """
    w, h = image_size
    m = np.asarray(crop_transform, np.float64)
    px = landmarks[:, :2].astype(np.float64) * (w, h)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))      # similarity: image px -> crop px
    out = np.empty((len(landmarks), 3))
    out[:, :2] = px @ m[:, :2].T + m[:, 2]
    out[:, 2] = landmarks[:, 2].astype(np.float64) * w * scale
    return out


def _crop_units(points: np.ndarray, crop_size: int) -> np.ndarray:
    """Crop pixels -> centred, about [-1, 1] (z scaled the same way), float32."""
    out = points / crop_size * 2.0
    out[:, :2] -= 1.0
    return out.astype(np.float32)


def eye_patches(crop: np.ndarray, points: np.ndarray, size: tuple[int, int] = EYE_PATCH) -> np.ndarray:
    """(2, H, W, 3) uint8: the performer's left eye as seen, then the right eye mirrored.

    ``points`` are the landmarks in crop pixels (``crop_points``).
    """
    ph, pw = size
    out = np.empty((2, ph, pw, 3), np.uint8)
    # (corner on the image's left, corner on the image's right) of each eye.
    for k, (a, b) in enumerate(((lm.L_EYE_INNER, lm.L_EYE_OUTER), (lm.R_EYE_OUTER, lm.R_EYE_INNER))):
        pa, pb = points[a, :2], points[b, :2]
        span = float(np.linalg.norm(pb - pa)) or 1.0
        ux, uy = (pb - pa) / span
        rot = np.array([[ux, uy], [-uy, ux]])                 # eye axis -> patch x
        centre = (pa + pb) / 2 - _EYE_LIFT * span * np.array([-uy, ux])
        scale = _EYE_FILL * pw / span
        m = np.hstack([scale * rot, (np.array([pw / 2, ph / 2]) - scale * rot @ centre)[:, None]])
        patch = cv2.warpAffine(crop, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[k] = patch if k == 0 else patch[:, ::-1]
    return out


def mirror_inputs(landmarks: np.ndarray, crop: np.ndarray, crop_transform: np.ndarray, image_size: tuple[int, int],
                  pnp_rotation: np.ndarray, twin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the tracker would have returned for the horizontally mirrored frame: (landmarks, crop,
    crop_transform, pnp_rotation). ``twin`` is ``face_landmarks.landmark_mirror_permutation()``.

    The crop template is left-right symmetric, so the mirrored frame's crop is the crop mirrored,
    and its transform is the old one conjugated by the two flips (x -> w - x in the image,
    x -> S - x in the crop).
    """
    w, _ = image_size
    s = crop.shape[1]
    mirrored = landmarks[twin].copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    m = np.asarray(crop_transform, np.float64)
    m_mirrored = np.array([[m[0, 0], -m[0, 1], s - m[0, 0] * w - m[0, 2]],
                           [-m[1, 0], m[1, 1], m[1, 0] * w + m[1, 2]]], np.float32)
    flip = np.diag([-1.0, 1.0, 1.0])
    return mirrored, np.ascontiguousarray(crop[:, ::-1]), m_mirrored, flip @ np.asarray(pnp_rotation) @ flip


def rotation_6d(matrix: np.ndarray) -> np.ndarray:
    """First two columns of a 3x3 rotation, (6,) float32."""
    return np.asarray(matrix, np.float32)[:, :2].T.reshape(6)


class FeatureExtractor:
    """One tracked frame -> the network's (features (FEATURE_DIM,) float32, eyes (2, H, W, 3) uint8)."""

    def __init__(self) -> None:
        self._frontalise = lm.Frontaliser()

    def __call__(self, landmarks: np.ndarray, crop: np.ndarray, crop_transform: np.ndarray,
                 image_size: tuple[int, int], pnp_rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image_size`` is (width, height); ``pnp_rotation`` the 3x3 head -> camera rotation."""
        points = crop_points(landmarks, crop_transform, image_size)
        in_crop = _crop_units(points, crop.shape[0])
        frontal = self._frontalise(landmarks, *image_size)
        distances = GeometryEstimator.features(frontal[:, :2] * np.array([1.0, -1.0], np.float32))   # y down
        features = np.concatenate([in_crop.reshape(-1), frontal.reshape(-1), [distances[n] for n in GEOMETRY_FEATURES],
                                   rotation_6d(pnp_rotation)])
        return features.astype(np.float32), eye_patches(crop, points)


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, (3,) axis * angle radians -> 3x3 (numpy only, for the runtime path)."""
    v = np.asarray(rotvec, np.float64)
    theta = float(np.linalg.norm(v))
    if theta < 1e-9:
        return np.eye(3)
    k = v / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """Inverse of ``rotvec_to_matrix`` for angles below pi."""
    r = np.asarray(matrix, np.float64)
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    theta = float(np.arccos(cos))
    if theta < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * np.sin(theta))
    return axis * theta


def matrix_to_quat(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation -> quaternion (x, y, z, w) with w >= 0."""
    q = quat_from_rotvec(matrix_to_rotvec(matrix).tolist())
    return q if q[3] >= 0 else tuple(-c for c in q)
