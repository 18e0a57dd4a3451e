"""Build the 3D face the head-pose solver fits: where each of MediaPipe's 478 landmarks sits on
the ICT-FaceKit head, and which of them stay put under expressions.

Renders the neutral face from many known poses, runs the daemon's tracker on each frame and
triangulates every landmark in head axes (linear least squares over the views, the camera being
known exactly). Landmarks that move under strong expressions are left out of the rigid set.

    python -m training.make_canonical_face --out avatar_bridge/assets/canonical_face.npz
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from rich.progress import track

from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
from avatar_bridge.types import Frame
from avatar_bridge.conventions import from_yaw_pitch_roll, quat_to_matrix
from training.render import Renderer, default_params

EXPRESSIONS = [
    {"jawOpen": 1.0}, {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}, {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    {"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0}, {"browDownLeft": 1.0, "browDownRight": 1.0},
    {"mouthPucker": 1.0}, {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0}, {"eyeWideLeft": 1.0, "eyeWideRight": 1.0},
    {"cheekPuff": 1.0}, {"noseSneerLeft": 1.0, "noseSneerRight": 1.0}, {"eyeSquintLeft": 1.0, "eyeSquintRight": 1.0},
    {"mouthStretchLeft": 1.0, "mouthStretchRight": 1.0}, {"jawLeft": 1.0}, {"mouthLeft": 1.0},
]


def _landmarks(renderer: Renderer, tracker: FaceTracker, params) -> np.ndarray | None:
    image = renderer.render(params).image
    obs = tracker.track(Frame(image, 0, 0.0, "canonical"))
    if obs is None:
        return None
    return obs.landmarks[:, :2] * np.array([renderer.width, renderer.height], np.float32)


def mirror_twins(points: np.ndarray) -> np.ndarray:
    """(478,) index of each landmark's mirror twin (33 <-> 263, 13 <-> 13, ...): the one-to-one
    matching of the face to its reflection that moves points least. Stored with the face so the
    runtime needs neither scipy.optimize (~0.6 s to import) nor the matching."""
    from scipy.optimize import linear_sum_assignment

    points = np.asarray(points, np.float64)
    reflected = points * np.array([-1.0, 1.0, 1.0])
    _, twin = linear_sum_assignment(np.linalg.norm(points[:, None] - reflected[None], axis=2))
    return twin


def _moving_parts() -> np.ndarray:
    from mediapipe.python.solutions import face_mesh_connections as c

    sets = (c.FACEMESH_LIPS, c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_EYEBROW,
            c.FACEMESH_RIGHT_EYEBROW, c.FACEMESH_LEFT_IRIS, c.FACEMESH_RIGHT_IRIS)
    return np.array(sorted({i for s in sets for edge in s for i in edge}))


def triangulate(views: list[tuple[np.ndarray, np.ndarray, np.ndarray]], width: int, height: int,
                fov_y_deg: float) -> np.ndarray:
    """Least-squares head-axes points (metres) from (pixels (K,2), rotation 3x3, translation m) views."""
    f = height / 2.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    k = views[0][0].shape[0]
    points = np.zeros((k, 3))
    for i in range(k):
        rows, rhs = [], []
        for px, rot, t in views:
            du, dv = px[i, 0] - width / 2.0, px[i, 1] - height / 2.0
            # camera point c = rot @ P + t must satisfy f*c_x + du*c_z = 0 and f*c_y - dv*c_z = 0 ... (v down)
            for a, b in ((np.array([f, 0, du]), 0), (np.array([0, f, -dv]), 0)):
                rows.append(a @ rot)
                rhs.append(-(a @ t))
        points[i] = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("avatar_bridge/assets/canonical_face.npz"))
    parser.add_argument("--rigid", type=int, default=120, help="how many of the stillest landmarks to fit the pose to")
    args = parser.parse_args()

    renderer = Renderer(256, 256)
    tracker = FaceTracker(TrackerConfig(static_image_mode=True))
    views = []
    poses = [(y, p) for y in (-30, -20, -10, 0, 10, 20, 30) for p in (15, 0, -15)]   # degrees; pitch + = nose down
    for yaw, pitch in track(poses, description="triangulating"):
        q = from_yaw_pitch_roll(math.radians(yaw), math.radians(pitch), 0.0)
        params = default_params(head_rotation=q)
        px = _landmarks(renderer, tracker, params)
        if px is not None:
            views.append((px, np.array(quat_to_matrix(q)), np.asarray(params.head_position)))
    points = triangulate(views, 256, 256, default_params().fov_y_deg)

    neutral = _landmarks(renderer, tracker, default_params())
    motions = []
    for expr in track(EXPRESSIONS, description="finding rigid points"):
        moved = _landmarks(renderer, tracker, default_params(blendshapes=expr))
        if moved is not None:
            motions.append(np.linalg.norm(moved - neutral, axis=1))
    # MediaPipe's mesh is regressed as a whole, so every point drifts a little under some
    # expression; rank by the motion under most (80 %) expressions and keep the stillest.
    motion = np.percentile(motions, 80, axis=0)
    motion[_moving_parts()] = np.inf   # lids, irises, lips and brows move by design
    motion[468:] = np.inf              # iris centres too (not in the connection sets)
    rigid = np.sort(np.argsort(motion)[: args.rigid])
    points = points.astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, points=points, rigid=rigid.astype(np.int32), motion_px=motion.astype(np.float32),
                        twin=mirror_twins(points).astype(np.int32))
    print(f"{len(views)} views, {len(rigid)} rigid landmarks -> {args.out}")


if __name__ == "__main__":
    main()
