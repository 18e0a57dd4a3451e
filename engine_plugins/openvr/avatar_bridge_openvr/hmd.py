"""The HMD's pose as a head rotation in avatar-bridge's head axes (pure numpy + scipy).

OpenVR poses are 3x4 device-to-tracking matrices; the HMD's own axes are x = the wearer's right,
y up, -z the way they look. avatar-bridge's head axes (FaceState) are x = the performer's LEFT, y up,
z out of the face, i.e. the HMD axes turned half a turn about y. The daemon turns the result into
camera axes with the offset ``head.recenter`` sets (avatar_bridge/runtime/external_head.py).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

# Head axes expressed in HMD axes: x -> -x, y -> y, z -> -z.
HEAD_IN_HMD = np.diag([-1.0, 1.0, -1.0])


def pose_rotation(matrix34) -> np.ndarray:
    """The 3x3 rotation of a 3x4 OpenVR pose (HmdMatrix34_t-like: ``m[i][j]``), re-orthonormalised
    (the runtime's matrices carry float noise and sometimes a little scale)."""
    m = np.array([[float(matrix34[i][j]) for j in range(3)] for i in range(3)])
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:   # never a reflection
        u[:, -1] *= -1
        r = u @ vt
    return r


def head_quaternion(matrix34) -> tuple[float, float, float, float]:
    """(x, y, z, w): the head's rotation in tracking space, in head axes, for ``head.set``."""
    r = pose_rotation(matrix34) @ HEAD_IN_HMD
    return tuple(float(c) for c in Rotation.from_matrix(r).as_quat())
