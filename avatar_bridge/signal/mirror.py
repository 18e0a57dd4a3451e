"""The selfie-view mirror: one reflection of the whole face across the camera's vertical plane.

Everything that has a side changes together, so an avatar never winks with one eye while
turning its head the other way: Left/Right blendshapes swap (``MIRROR_PERMUTATION``), the eyes
swap and their yaw flips, the head's yaw and roll flip, and its position moves to -x.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from avatar_bridge.arkit import MIRROR_PERMUTATION
from avatar_bridge.types import FaceState

_PERMUTATION = np.asarray(MIRROR_PERMUTATION, np.intp)


def mirror_labels(blendshapes: np.ndarray, gaze: np.ndarray, quat: np.ndarray, position: np.ndarray):
    """The mirror on arrays with any leading axes: blendshapes (..., 52), gaze (..., 4) as (left yaw,
    left pitch, right yaw, right pitch), quaternion (..., 4) xyzw, position (..., 3).

    A rotation reflected across the camera's x = 0 plane (R -> M R M, M = diag(-1, 1, 1)) keeps its
    angle while its axis reflects as a pseudovector: (x, y, z, w) -> (x, -y, -z, w), so yaw and roll
    change sign and pitch does not. The mirrored left eye is the old right eye, with yaw negated.
    """
    bs = np.asarray(blendshapes)[..., _PERMUTATION]
    gaze = np.asarray(gaze)
    g = np.stack([-gaze[..., 2], gaze[..., 3], -gaze[..., 0], gaze[..., 1]], axis=-1)
    quat, position = np.asarray(quat), np.asarray(position)
    q = quat * np.array([1, -1, -1, 1], quat.dtype)
    p = position * np.array([-1, 1, 1], position.dtype)
    return bs, g, q, p


def mirror_face_state(state: FaceState) -> FaceState:
    """The same face seen in a mirror (ARKit Left/Right stay the performer's own, so they swap)."""
    bs, g, q, p = mirror_labels(np.asarray(state.blendshapes, np.float32), np.array([*state.gaze_left, *state.gaze_right]),
                                np.asarray(state.head_rotation, np.float64), np.asarray(state.head_position, np.float64))
    return replace(
        state,
        blendshapes=bs,
        head_rotation=tuple(float(c) for c in q),
        head_position=tuple(float(c) for c in p),
        gaze_left=(float(g[0]), float(g[1])),
        gaze_right=(float(g[2]), float(g[3])),
    )
