"""Neural estimator: the shipped CNN+GRU network (ONNX, onnxruntime) on the tracker's crop and landmarks.

Blendshapes and gaze come from the network; head rotation is the PnP solution corrected by the
network's small rotation, position is PnP's. The GRU state is carried from frame to frame and
cleared by ``reset()`` (the pipeline calls it when the face is lost). numpy + onnxruntime only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.types import FaceObservation, FaceState
from blendshape_model import SHIPPED_MODEL
from blendshape_model.features import frame_features, matrix_to_quat, rotvec_to_matrix
from blendshape_model.runner import BlendshapeRunner, RunnerConfig


@dataclass(frozen=True)
class NeuralConfig:
    model_path: str | None = None          # None: the model shipped in blendshape_model/weights
    runner: RunnerConfig = RunnerConfig()
    head_pose: HeadPoseConfig = HeadPoseConfig()


class NeuralEstimator:
    """FaceObservation -> FaceState with the blendshape network (see module docstring)."""

    name = "neural"

    def __init__(self, config: NeuralConfig = NeuralConfig()) -> None:
        self.config = config
        self.runner = BlendshapeRunner(Path(config.model_path) if config.model_path else SHIPPED_MODEL, config.runner)
        self._pose = HeadPoseSolver(config.head_pose)

    @classmethod
    def from_path(cls, path: str | None = None) -> "NeuralEstimator":
        """The model at ``path``, or the shipped one when None; FileNotFoundError when it is absent."""
        return cls(NeuralConfig(model_path=path))

    def reset(self) -> None:
        self.runner.reset()
        self._pose.reset()

    def estimate(self, observation: FaceObservation) -> FaceState:
        frame = observation.frame
        h, w = frame.image.shape[:2]
        pose = self._pose.solve(observation.landmarks, w, h)
        feats = frame_features(observation.landmarks, observation.crop_transform, (w, h), pose.matrix,
                               crop_size=observation.crop.shape[0])
        out = self.runner.step(observation.crop, feats)
        rotation = rotvec_to_matrix(out.pose_delta) @ pose.matrix
        g = out.gaze.astype(float)
        return FaceState(
            blendshapes=np.clip(out.blendshapes, 0.0, 1.0).astype(np.float32),
            head_rotation=matrix_to_quat(rotation),
            head_position=pose.position,
            gaze_left=(float(g[0]), float(g[1])),
            gaze_right=(float(g[2]), float(g[3])),
            confidence=observation.confidence,
            face_present=True,
            t_capture=frame.t_capture,
            frame_index=frame.index,
        )
