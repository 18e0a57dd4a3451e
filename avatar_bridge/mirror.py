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


def mirror_rotation(q: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Reflect a rotation (x, y, z, w) across the camera's x = 0 plane: R -> M R M, M = diag(-1, 1, 1).

    The rotation axis reflects as a pseudovector (x, y, z) -> (x, -y, -z) with the angle kept,
    so yaw (about y) and roll (about z) change sign and pitch (about x) does not.
    """
    x, y, z, w = q
    return (float(x), -float(y), -float(z), float(w))


def mirror_face_state(state: FaceState) -> FaceState:
    """The same face seen in a mirror (ARKit Left/Right stay the performer's own, so they swap)."""
    gl_yaw, gl_pitch = state.gaze_left
    gr_yaw, gr_pitch = state.gaze_right
    px, py, pz = state.head_position
    return replace(
        state,
        blendshapes=np.asarray(state.blendshapes, np.float32)[_PERMUTATION],
        head_rotation=mirror_rotation(state.head_rotation),
        head_position=(-float(px), float(py), float(pz)),
        # The mirrored left eye is the old right eye; yaw "towards the performer's left" flips.
        gaze_left=(-float(gr_yaw), float(gr_pitch)),
        gaze_right=(-float(gl_yaw), float(gl_pitch)),
    )
