"""Landmark estimator: our network distilled from MediaPipe's real-face blendshape reading
(training/distill.py), on the 146 tracked landmarks it was trained on. onnxruntime + numpy only.

Blendshapes come from the network, run on the frame and on its mirror image (each landmark swapped
with its twin) in one call and averaged, so a wink or a one-sided smile reads the same on either side;
gaze is derived from the eyeLook* shapes; head pose is the PnP solution. It keeps no state between
frames: a blink is read on the frame it happens (the signal chain does the smoothing).

Where a geometry reading transfers to real faces better than the teacher's (eyeBlink: the eyelid
aspect ratio caught 15 of 16 real blinks where the teacher caught 11; jawOpen: the lip gap, 18 of
18 against 14; training/evaluate_real.py), the larger of the two readings is used: each misses in
different faces (the teacher under narrowed laughing eyes, the ratio on few), and both rest near 0
once the signal chain's auto-neutral has taken off a performer's resting offset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX, MIRROR_PERMUTATION
from avatar_bridge.estimators.geometry import GeometryConfig, GeometryEstimator
from avatar_bridge.signal.chain import gaze_from_eye_look
from avatar_bridge.tracking.face_landmarks import landmark_mirror_permutation
from avatar_bridge.tracking.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.estimators.base import cpu_session
from avatar_bridge.types import FaceObservation, FaceState
from blendshape_model import WEIGHTS_DIR

SHIPPED_LANDMARK_MODEL = WEIGHTS_DIR / "landmarks.onnx"
CONTRACT = "teacher146-px-v1"


class LandmarkModelError(ValueError):
    """The .onnx is not a landmark model this estimator can feed; the text says what it expected."""


@dataclass(frozen=True)
class LandmarkNetConfig:
    model_path: str | None = None          # None: blendshape_model/weights/landmarks.onnx
    head_pose: HeadPoseConfig = HeadPoseConfig()
    mirror_average: bool = True            # also run the mirrored landmarks and average (docstring)
    threads: int = 1                       # onnxruntime intra-op threads: the tracker wants the other core
    # Shapes read as the larger of the network's and the geometry estimator's value (docstring).
    geometry_shapes: tuple[str, ...] = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")


class LandmarkNetEstimator:
    """FaceObservation -> FaceState with the distilled landmark network (see module docstring)."""

    name = "landmarks"

    def __init__(self, config: LandmarkNetConfig = LandmarkNetConfig()) -> None:
        path = Path(config.model_path) if config.model_path else SHIPPED_LANDMARK_MODEL
        if not path.exists():
            raise FileNotFoundError(f"no landmark model at {path}")
        self.session = cpu_session(path, config.threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("contract") != CONTRACT or json.loads(meta.get("outputs", "[]")) != list(ARKIT_BLENDSHAPES):
            raise LandmarkModelError(f"{path} is not a {CONTRACT} landmark model (its contract is "
                                     f"{meta.get('contract')!r}); export it with python -m training.distill")
        self.points = np.array(json.loads(meta["landmarks"]), np.int64)
        twin = landmark_mirror_permutation()
        where = {int(p): i for i, p in enumerate(self.points)}
        # The mirror stream needs each point's twin among the points the model reads.
        self._mirror = (np.array([where[int(twin[p])] for p in self.points], np.int64)
                        if config.mirror_average and all(int(twin[p]) in where for p in self.points) else None)
        self.config = config
        # With geometry's shapes fused in, its PnP pose is taken too; otherwise a solver of our own.
        self._geometry = GeometryEstimator(GeometryConfig(head_pose=config.head_pose)) if config.geometry_shapes else None
        self._pose = None if self._geometry is not None else HeadPoseSolver(config.head_pose)
        self._geometry_idx = [INDEX[n] for n in config.geometry_shapes]

    @classmethod
    def from_path(cls, path: str | None = None) -> "LandmarkNetEstimator":
        """The model at ``path``, or the shipped one when None; FileNotFoundError when it is absent."""
        return cls(LandmarkNetConfig(model_path=path))

    def reset(self) -> None:
        (self._geometry or self._pose).reset()

    def blendshapes(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        """(478, 2+) image-normalised landmarks -> (52,) coefficients."""
        pts = landmarks[self.points, :2].astype(np.float32) * np.array([width, height], np.float32)
        if self._mirror is None:
            return self.session.run(None, {"points": pts[None]})[0][0]
        flipped = pts[self._mirror].copy()
        flipped[:, 0] = width - flipped[:, 0]
        out = self.session.run(None, {"points": np.stack([pts, flipped])})[0]
        return (out[0] + out[1][list(MIRROR_PERMUTATION)]) / 2

    def estimate(self, observation: FaceObservation) -> FaceState:
        frame = observation.frame
        h, w = frame.image.shape[:2]
        bs = np.clip(self.blendshapes(observation.landmarks, w, h), 0.0, 1.0).astype(np.float32)
        if self._geometry is not None:
            # The geometry estimator solves the same PnP head pose: take it rather than solve twice.
            g = self._geometry.estimate(observation)
            bs[self._geometry_idx] = np.maximum(bs[self._geometry_idx], g.blendshapes[self._geometry_idx])
            rotation, position = g.head_rotation, g.head_position
        else:
            pose = self._pose.solve(observation.landmarks, w, h)
            rotation, position = pose.rotation, pose.position
        gaze_left, gaze_right = gaze_from_eye_look(bs)
        return FaceState(blendshapes=bs, head_rotation=rotation, head_position=position,
                         gaze_left=gaze_left, gaze_right=gaze_right, confidence=observation.confidence,
                         face_present=True, t_capture=frame.t_capture, frame_index=frame.index)
