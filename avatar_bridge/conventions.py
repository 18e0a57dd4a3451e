"""Coordinate conventions: our camera/head frames and how they map to Unity, Unreal and ARKit angles.

Written once here so adapters and engine plugins agree (see FaceState in types.py):

* camera frame: x = image right, y up, z towards the viewer (right-handed, metres);
* head frame:   x = performer's left, y up, z out of the face; identity = looking into the camera.
  This is exactly ARKit's face-anchor convention, so ARKit angles fall out directly;
* positive yaw (about +y) = the performer turns to THEIR left; positive pitch (about +x) = nose
  down; positive roll (about +z) = the performer's left ear rises (head tilts to their right).

Quaternions are (x, y, z, w). A change of basis by a matrix A with det(A) = -1 (right- to left-handed)
turns a rotation R into A R A^T; for the quaternion that is q' = (-A v, w), because the rotation axis is
a pseudovector. Every mapping below is one such A.
"""

from __future__ import annotations

import math
from typing import Sequence

Quat = tuple[float, float, float, float]
Vec3 = tuple[float, float, float]


def quat_multiply(a: Sequence[float], b: Sequence[float]) -> Quat:
    """Hamilton product a*b (apply b first, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)


def quat_normalize(q: Sequence[float]) -> Quat:
    n = math.sqrt(sum(c * c for c in q))
    if n < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    return (q[0] / n, q[1] / n, q[2] / n, q[3] / n)


def axis_angle(axis: Sequence[float], angle: float) -> Quat:
    """Rotation of ``angle`` radians about a unit ``axis`` (right-hand rule)."""
    s = math.sin(angle / 2)
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2))


def quat_from_rotvec(v: Sequence[float]) -> Quat:
    """Rotation vector (unit axis * angle, radians) -> quaternion."""
    angle = math.sqrt(sum(c * c for c in v))
    if angle < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    return axis_angle([c / angle for c in v], angle)


def quat_to_matrix(q: Sequence[float]) -> list[list[float]]:
    x, y, z, w = quat_normalize(q)
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]


def rotate(q: Sequence[float], v: Sequence[float]) -> Vec3:
    m = quat_to_matrix(q)
    return tuple(m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2] for i in range(3))  # type: ignore[return-value]


def from_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> Quat:
    """Head rotation from ARKit-sense angles (radians): R = Ry(yaw) * Rx(pitch) * Rz(roll)."""
    return quat_multiply(quat_multiply(axis_angle((0, 1, 0), yaw), axis_angle((1, 0, 0), pitch)),
                         axis_angle((0, 0, 1), roll))


def head_yaw_pitch_roll(q: Sequence[float]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) radians in ARKit's face-anchor sense, the inverse of ``from_yaw_pitch_roll``.

    yaw > 0: turned to the performer's left; pitch > 0: nose down; roll > 0: about +z (out of face).
    """
    m = quat_to_matrix(q)
    pitch = math.asin(max(-1.0, min(1.0, -m[1][2])))
    yaw = math.atan2(m[0][2], m[2][2])
    roll = math.atan2(m[1][0], m[1][1])
    return yaw, pitch, roll


def gaze_quaternion(yaw: float, pitch: float) -> Quat:
    """An eye's rotation in head axes from FaceState gaze (yaw > 0 towards the performer's left,
    pitch > 0 up). Pitch up is a negative rotation about +x (+x rotation looks down)."""
    return quat_multiply(axis_angle((0, 1, 0), yaw), axis_angle((1, 0, 0), -pitch))


def to_unity(q: Sequence[float], p: Sequence[float]) -> tuple[Quat, Vec3]:
    """Map a head pose to Unity (left-handed, x right, y up, z forward), for an avatar that faces the
    (virtual) camera the way the performer faces the webcam, as VSeeFace/VMC expect.

    Basis A = diag(-1, 1, 1): the performer's left (camera +x at rest) becomes the avatar's left
    (Unity -x), up stays up, out-of-face stays the avatar's forward (+z). So a performer turning to
    their left makes the avatar turn to ITS left (the viewer sees a mirror image, as in a selfie).
    Returns (q_unity_xyzw, p_unity_metres).
    """
    x, y, z, w = q
    return (x, -y, -z, w), (-p[0], p[1], p[2])


def to_unreal(q: Sequence[float], p: Sequence[float]) -> tuple[Quat, Vec3]:
    """Map a head pose to Unreal (left-handed, x forward, y right, z up, centimetres).

    Basis A: out-of-face/camera +z -> +x (forward), performer's left/camera +x -> -y (the avatar's
    left), up -> +z. A performer turning to their left gives a negative Unreal yaw (turn left).
    Returns (q_unreal_xyzw, p_unreal_cm).
    """
    x, y, z, w = q
    # -A v with A v = (v.z, -v.x, v.y)
    return (-z, x, -y, w), (100.0 * p[2], -100.0 * p[0], 100.0 * p[1])


def mirror_pose(q: Sequence[float], p: Sequence[float]) -> tuple[Quat, Vec3]:
    """Selfie mirror (flip image left/right): negates yaw and roll and the x position; pitch stays."""
    x, y, z, w = q
    return (x, -y, -z, w), (-p[0], p[1], p[2])
