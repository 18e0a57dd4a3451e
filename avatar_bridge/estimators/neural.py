"""Neural estimator: the shipped CNN+GRU network (ONNX, onnxruntime) on the tracker's crop and landmarks.

Blendshapes and gaze come from the network; head rotation is the PnP solution corrected by the
network's small rotation, position is PnP's. The GRU state is carried from frame to frame and
cleared by ``reset()`` (the pipeline calls it when the face is lost). numpy + onnxruntime only.

By default each frame also runs mirrored (the crop flipped, each landmark swapped with its twin)
in the same call, as a second stream with its own state, and the mirrored answer, mirrored back,
is averaged in. A wink or a one-sided smile then reads the same on either side of the face, which
the network alone does not guarantee, and the average is more accurate (docs/model_card.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.tracking.face_landmarks import landmark_mirror_permutation
from avatar_bridge.tracking.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.signal.mirror import mirror_labels
from avatar_bridge.types import FaceObservation, FaceState
from blendshape_model import SHIPPED_MODEL
from blendshape_model.features import FeatureExtractor, matrix_to_quat, mirror_inputs, rotvec_to_matrix
from blendshape_model.runner import BlendshapeRunner, RunnerConfig


@dataclass(frozen=True)
class NeuralConfig:
    model_path: str | None = None          # None: the model shipped in blendshape_model/weights
    runner: RunnerConfig = RunnerConfig()
    head_pose: HeadPoseConfig = HeadPoseConfig()
    mirror_average: bool = True            # also run the mirrored frame and average (module docstring)


class NeuralEstimator:
    """FaceObservation -> FaceState with the blendshape network (see module docstring)."""

    name = "neural"

    def __init__(self, config: NeuralConfig = NeuralConfig()) -> None:
        self.config = config
        self.runner = BlendshapeRunner(Path(config.model_path) if config.model_path else SHIPPED_MODEL, config.runner)
        self._pose = HeadPoseSolver(config.head_pose)
        self._extract = FeatureExtractor()
        self._twin = landmark_mirror_permutation()

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
        inputs = (observation.landmarks, observation.crop, observation.crop_transform, (w, h), pose.matrix)
        feats, eyes = self._extract(*inputs)
        if not self.config.mirror_average:
            out = self.runner.step(observation.crop, eyes, feats)
            bs, gaze, delta = out.blendshapes, out.gaze, out.pose_delta
        else:
            landmarks, crop, transform, rot = mirror_inputs(*inputs, self._twin)
            m_feats, m_eyes = self._extract(landmarks, crop, transform, (w, h), rot)
            out = self.runner.step(np.stack([observation.crop, crop]), np.stack([eyes, m_eyes]),
                                   np.stack([feats, m_feats]))
            # Mirror the second stream's answer back. A rotation vector reflects like a quaternion's
            # vector part (see mirror_labels): yaw and roll change sign.
            m_bs, m_gaze, _, _ = mirror_labels(out.blendshapes[1], out.gaze[1], np.array([0.0, 0, 0, 1]), np.zeros(3))
            m_delta = out.pose_delta[1] * np.array([1.0, -1.0, -1.0], np.float32)
            bs = (out.blendshapes[0] + m_bs) / 2
            gaze = (out.gaze[0] + m_gaze) / 2
            delta = (out.pose_delta[0] + m_delta) / 2
        rotation = rotvec_to_matrix(delta) @ pose.matrix
        g = gaze.astype(float)
        return FaceState(
            blendshapes=np.clip(bs, 0.0, 1.0).astype(np.float32),
            head_rotation=matrix_to_quat(rotation),
            head_position=pose.position,
            gaze_left=(float(g[0]), float(g[1])),
            gaze_right=(float(g[2]), float(g[3])),
            confidence=observation.confidence,
            face_present=True,
            t_capture=frame.t_capture,
            frame_index=frame.index,
        )
