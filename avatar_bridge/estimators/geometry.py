"""Geometry baseline: blendshapes from landmark distances, gaze from the irises, pose from PnP.

No learning: each shape is a ratio of landmark distances, normalised by the eye span and mapped
linearly from a rest value to a full value. It is the fallback when no model is installed and the
score the neural estimator must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_bridge.tracking import face_landmarks as lm
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.tracking.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.types import FaceObservation, FaceState
from blendshape_model.contract import GEOMETRY_FEATURES


@dataclass(frozen=True)
class GeometryConfig:
    """(rest, full) pairs: the feature value at weight 0 and at weight 1. Distances are in units of
    the outer eye-corner span; tuned on ICT-FaceKit renders through MediaPipe."""

    eye_open: tuple[float, float] = (0.36, 0.10)      # eye aspect ratio: open -> closed
    eye_wide: tuple[float, float] = (0.39, 0.48)
    jaw_open: tuple[float, float] = (0.02, 0.42)      # inner lip gap
    smile: tuple[float, float] = (-0.012, 0.07)       # corner height above the lip midline, jaw removed
    frown: tuple[float, float] = (-0.016, -0.05)
    stretch: tuple[float, float] = (0.56, 0.66)       # mouth width
    pucker: tuple[float, float] = (0.54, 0.47)
    funnel_gap: tuple[float, float] = (0.03, 0.16)    # lip gap of a funnel (puckered, open)
    brow_inner_up: tuple[float, float] = (0.33, 0.39)  # brow height above the eye line, blink removed
    brow_outer_up: tuple[float, float] = (0.20, 0.25)
    brow_down: tuple[float, float] = (0.27, 0.24)
    # MediaPipe's mesh couples points: an opening jaw lowers the lip midline (reads as a smile) and
    # a closing lid lifts the brow points; these slopes undo that (measured on ICT-FaceKit renders).
    jaw_to_lift: float = 0.18
    lid_to_brow: float = 0.18
    ear_rest: float = 0.36
    gaze_yaw_max: float = 0.6                         # radians at the eye corner
    gaze_pitch_max: float = 0.45
    head_pose: HeadPoseConfig = HeadPoseConfig()


def _ramp(value: np.ndarray | float, rest_full: tuple[float, float]) -> float:
    rest, full = rest_full
    return float(np.clip((value - rest) / (full - rest), 0.0, 1.0))


class GeometryEstimator:
    """Landmark geometry -> FaceState (see module docstring)."""

    name = "geometry"

    def __init__(self, config: GeometryConfig = GeometryConfig()) -> None:
        self.config = config
        self._pose = HeadPoseSolver(config.head_pose)
        self._frontalise = lm.Frontaliser()

    def reset(self) -> None:
        self._pose.reset()

    def face_points(self, observation: FaceObservation) -> np.ndarray:
        """Landmarks turned to face the camera (``face_landmarks.Frontaliser``): (478, 2) with x
        towards the performer's left, y down, origin between the outer eye corners, unit = the
        outer eye-corner span."""
        h, w = observation.frame.image.shape[:2]
        return self._frontalise(observation.landmarks, w, h)[:, :2] * np.array([1.0, -1.0], np.float32)

    @staticmethod
    def features(pts: np.ndarray) -> dict[str, float]:
        """The raw distances each shape is read from (see GeometryConfig for their ranges), named and
        ordered as ``contract.GEOMETRY_FEATURES``: the neural network reads them in that order."""
        def dist(a: int, b: int) -> float:
            return float(np.linalg.norm(pts[a] - pts[b]))

        f = {}
        for side, outer, inner, lids, brow in (("Left", lm.L_EYE_OUTER, lm.L_EYE_INNER, lm.L_EYE_LIDS, lm.L_BROW),
                                               ("Right", lm.R_EYE_OUTER, lm.R_EYE_INNER, lm.R_EYE_LIDS, lm.R_BROW)):
            f[f"ear{side}"] = float(np.mean([dist(a, b) for a, b in lids]) / (dist(outer, inner) or 1.0))
            heights = [-float(pts[b, 1]) for b in brow]   # above the eye line (y is down)
            f[f"browInner{side}"], f[f"browOuter{side}"] = heights[0], heights[2]
            f[f"brow{side}"] = float(np.mean(heights))
        f["gap"] = dist(lm.LIP_INNER_TOP, lm.LIP_INNER_BOTTOM)
        f["width"] = dist(lm.L_MOUTH_CORNER, lm.R_MOUTH_CORNER)
        mid_y = (pts[lm.LIP_INNER_TOP, 1] + pts[lm.LIP_INNER_BOTTOM, 1]) / 2
        for side, corner in (("Left", lm.L_MOUTH_CORNER), ("Right", lm.R_MOUTH_CORNER)):
            f[f"lift{side}"] = float(mid_y - pts[corner, 1])   # + when the corner is above the lip midline
        return {name: f[name] for name in GEOMETRY_FEATURES}

    def _corrected(self, f: dict[str, float]) -> dict[str, float]:
        c = self.config
        f = dict(f)
        for side in ("Left", "Right"):
            f[f"lift{side}"] -= c.jaw_to_lift * f["gap"]
            lid = c.lid_to_brow * (c.ear_rest - f[f"ear{side}"])
            for key in ("browInner", "browOuter", "brow"):
                f[f"{key}{side}"] -= lid
        return f

    def estimate(self, observation: FaceObservation) -> FaceState:
        c = self.config
        frame = observation.frame
        h, w = frame.image.shape[:2]
        pose = self._pose.solve(observation.landmarks, w, h)
        pts = self.face_points(observation)
        f = self._corrected(self.features(pts))
        bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)

        def put(name: str, value: float) -> None:
            bs[INDEX[name]] = value

        for side in ("Left", "Right"):
            put(f"eyeBlink{side}", _ramp(f[f"ear{side}"], c.eye_open))
            put(f"eyeWide{side}", _ramp(f[f"ear{side}"], c.eye_wide))
            put(f"mouthSmile{side}", _ramp(f[f"lift{side}"], c.smile))
            put(f"mouthFrown{side}", _ramp(f[f"lift{side}"], c.frown))
            put(f"mouthStretch{side}", _ramp(f["width"], c.stretch) * (1.0 - bs[INDEX[f"mouthSmile{side}"]]))
            put(f"browOuterUp{side}", _ramp(f[f"browOuter{side}"], c.brow_outer_up))
            put(f"browDown{side}", _ramp(f[f"brow{side}"], c.brow_down))
        put("jawOpen", _ramp(f["gap"], c.jaw_open))
        put("mouthPucker", _ramp(f["width"], c.pucker))
        put("mouthFunnel", _ramp(f["width"], c.pucker) * _ramp(f["gap"], c.funnel_gap))
        put("browInnerUp", (_ramp(f["browInnerLeft"], c.brow_inner_up) + _ramp(f["browInnerRight"], c.brow_inner_up)) / 2)

        # Gaze: iris centre between the eye corners (yaw) and between the lids (pitch).
        gaze = {}
        for side, iris, outer, inner, lids in (("Left", lm.L_IRIS, lm.L_EYE_OUTER, lm.L_EYE_INNER, lm.L_EYE_LIDS),
                                               ("Right", lm.R_IRIS, lm.R_EYE_OUTER, lm.R_EYE_INNER, lm.R_EYE_LIDS)):
            axis = pts[outer] - pts[inner]
            t = float(np.dot(pts[iris] - pts[inner], axis) / (np.dot(axis, axis) or 1.0))  # 0 inner .. 1 outer
            toward_outer = float(np.clip(2.0 * t - 1.0, -1.0, 1.0))
            # The left eye's outer corner lies towards the performer's left (+yaw); the right eye's away.
            yaw = c.gaze_yaw_max * toward_outer * (1.0 if side == "Left" else -1.0)
            top, bottom = pts[lids[1][0]], pts[lids[1][1]]
            height = float(bottom[1] - top[1]) or 1e-3
            v = (pts[iris, 1] - (top[1] + bottom[1]) / 2) / height   # + when the iris sits low
            pitch = float(np.clip(-v * 2.0, -1.0, 1.0)) * c.gaze_pitch_max
            gaze[side] = (yaw, pitch)
            put(f"eyeLookOut{side}", max(toward_outer, 0.0))
            put(f"eyeLookIn{side}", max(-toward_outer, 0.0))
            put(f"eyeLookUp{side}", max(pitch / c.gaze_pitch_max, 0.0))
            put(f"eyeLookDown{side}", max(-pitch / c.gaze_pitch_max, 0.0))

        return FaceState(
            blendshapes=np.clip(bs, 0.0, 1.0),
            head_rotation=pose.rotation,
            head_position=pose.position,
            gaze_left=gaze["Left"],
            gaze_right=gaze["Right"],
            confidence=observation.confidence,
            face_present=True,
            t_capture=frame.t_capture,
            frame_index=frame.index,
        )
