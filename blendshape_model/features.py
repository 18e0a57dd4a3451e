"""What the network reads from one tracked frame, in numpy only (shared by training and runtime).

The landmarks are moved into the aligned crop's frame with ``crop_transform``, which removes
image position, scale and roll, then centred and scaled to about [-1, 1]; z is scaled the same
way. The PnP head rotation rides along (first two columns of its matrix, the continuous 6D
form) so the network can correct it rather than rebuild it.
"""

from __future__ import annotations

import numpy as np

N_LANDMARKS = 478
FEATURE_DIM = N_LANDMARKS * 3 + 6      # crop-frame landmarks (x, y, z) + PnP rotation (6D)
CROP_SIZE = 96                         # the tracker's default TrackerConfig.crop_size


def landmark_features(landmarks: np.ndarray, crop_transform: np.ndarray, image_size: tuple[int, int],
                      crop_size: int = CROP_SIZE) -> np.ndarray:
    """(478, 3) image-normalised landmarks -> (478, 3) float32 in crop units, centred, ~[-1, 1].

    ``image_size`` is (width, height) of the frame the landmarks were found in.
    """
    w, h = image_size
    m = np.asarray(crop_transform, np.float64)
    px = landmarks[:, :2].astype(np.float64) * (w, h)
    xy = px @ m[:, :2].T + m[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))      # similarity: image px -> crop px
    z = landmarks[:, 2].astype(np.float64) * w * scale
    out = np.empty((len(landmarks), 3), np.float32)
    out[:, :2] = (xy / crop_size - 0.5) * 2.0
    out[:, 2] = z / crop_size * 2.0
    return out


def rotation_6d(matrix: np.ndarray) -> np.ndarray:
    """First two columns of a 3x3 rotation, (6,) float32."""
    return np.asarray(matrix, np.float32)[:, :2].T.reshape(6)


def frame_features(landmarks: np.ndarray, crop_transform: np.ndarray, image_size: tuple[int, int],
                   pnp_rotation: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """(FEATURE_DIM,) float32: crop-frame landmarks then the PnP rotation (3x3 head -> camera)."""
    lmf = landmark_features(landmarks, crop_transform, image_size, crop_size)
    return np.concatenate([lmf.reshape(-1), rotation_6d(pnp_rotation)]).astype(np.float32)


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
    v = matrix_to_rotvec(matrix)
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    xyz = v / theta * np.sin(theta / 2)
    q = np.array([*xyz, np.cos(theta / 2)])
    if q[3] < 0:
        q = -q
    return tuple(float(c) for c in q)
