"""Lower-face estimator of headset mode: a small CNN on the lower-face crop (onnxruntime + numpy),
and the full-face landmarks estimator on the mesh wherever MediaPipe still fits it under the visor.

Two readers because each fails where the other works. The crop network needs no fit at all (a user
ROI or a mouth camera's frame does, and the crop is the only input that still carries the lips),
but trained on renders it reads little beyond jawOpen on real faces. Where the mesh fits (99 % of
real frames with a painted visor), the distilled landmarks network reads real smiles, puckers and
speech-sized jaw opens that the crop network misses; jawOpen takes the larger of the two
(``LowerFaceConfig.mesh_estimator``; the numbers are in docs/model_card.md). The crop network is
trained on ICT-FaceKit renders with painted headsets (training/train_headset.py). Eyes, gaze and
brows are marked untracked and left at 0; the head pose is PnP's when the mesh fitted, else
untracked (an HMD gives a better one, engine_plugins/openvr/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.regions import HEADSET_UNTRACKED
from avatar_bridge.tracking.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.estimators.base import cpu_session
from avatar_bridge.types import FaceObservation, FaceState, LowerFaceObservation
from blendshape_model import WEIGHTS_DIR

SHIPPED_LOWER_FACE_MODEL = WEIGHTS_DIR / "lower_face.onnx"
NO_MESH_UNTRACKED = HEADSET_UNTRACKED | {"head"}
JAW = INDEX["jawOpen"]


class LowerFaceModelError(ValueError):
    """The .onnx is not a lower-face model; the text says what was expected."""


@dataclass(frozen=True)
class LowerFaceConfig:
    model_path: str | None = None          # None: blendshape_model/weights/lower_face.onnx
    head_pose: HeadPoseConfig = HeadPoseConfig()
    mirror_average: bool = True            # also run the mirrored crop and average: one-sided shapes stay sided
    threads: int = 1
    # Where the face mesh fits under the visor, the shapes this network reads come from this
    # full-face estimator on the mesh instead, jawOpen the larger of the two (each catches real jaw
    # opens the other misses): "landmarks" (what `auto` runs), "geometry", or "" (the network alone).
    # Chosen on real faces with painted visors (python -m training.evaluate_real --headset,
    # docs/model_card.md "Lower-face network"): the crop network alone reads no real smile or pucker.
    mesh_estimator: str = "landmarks"


class LowerFaceEstimator:
    """LowerFaceObservation -> FaceState (see the module docstring)."""

    name = "lower-face"

    def __init__(self, config: LowerFaceConfig = LowerFaceConfig()) -> None:
        path = Path(config.model_path) if config.model_path else SHIPPED_LOWER_FACE_MODEL
        if not path.exists():
            raise FileNotFoundError(f"no lower-face model at {path}; train one with python -m training.train_headset")
        self.session = cpu_session(path, config.threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            shapes = json.loads(meta["shapes"])
            self.crop_size = int(meta["crop_size"])
        except (KeyError, ValueError):
            raise LowerFaceModelError(f"{path} has no 'shapes'/'crop_size' metadata; export it with "
                                      "python -m training.train_headset") from None
        unknown = [s for s in shapes if s not in INDEX]
        if unknown:
            raise LowerFaceModelError(f"{path} predicts shapes this build does not know: {unknown}")
        self.columns = np.array([INDEX[s] for s in shapes], np.int64)
        names = [ARKIT_BLENDSHAPES[i] for i in self.columns]
        twin = {n: n.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right") for n in names}
        self._flip = np.array([names.index(twin[n]) for n in names]) if all(twin[n] in names for n in names) else None
        self.config = config
        self._pose = HeadPoseSolver(config.head_pose)
        self._mesh = None
        if config.mesh_estimator:
            from avatar_bridge.estimators.registry import create_estimator
            self._mesh = create_estimator(config.mesh_estimator)

    @classmethod
    def from_path(cls, path: str | None = None) -> "LowerFaceEstimator":
        return cls(LowerFaceConfig(model_path=path))

    def reset(self) -> None:
        self._pose.reset()
        if self._mesh is not None:
            self._mesh.reset()

    def lower_face(self, crop: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 crop -> the model's shapes (in ``self.columns`` order), 0..1."""
        x = np.ascontiguousarray(crop, np.float32).transpose(2, 0, 1)[None] / 255.0
        if self._flip is None or not self.config.mirror_average:
            return self.session.run(None, {"crop": x})[0][0]
        out = self.session.run(None, {"crop": np.concatenate([x, x[..., ::-1]])})[0]
        return (out[0] + out[1][self._flip]) / 2

    def estimate(self, observation: LowerFaceObservation) -> FaceState:
        frame = observation.frame
        bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        bs[self.columns] = np.clip(self.lower_face(observation.crop), 0.0, 1.0)
        kwargs = {}
        if observation.landmarks is not None:
            h, w = frame.image.shape[:2]
            if self._mesh is not None:
                face = FaceObservation(frame, observation.landmarks, observation.crop, np.eye(2, 3, dtype=np.float32),
                                       observation.confidence)
                mesh = self._mesh.estimate(face)
                jaw = max(bs[JAW], mesh.blendshapes[JAW])
                bs[self.columns] = mesh.blendshapes[self.columns]
                bs[JAW] = jaw
                kwargs = dict(head_rotation=mesh.head_rotation, head_position=mesh.head_position)
            else:
                pose = self._pose.solve(observation.landmarks, w, h)
                kwargs = dict(head_rotation=pose.rotation, head_position=pose.position)
            untracked = HEADSET_UNTRACKED
        else:
            self._pose.reset()
            untracked = NO_MESH_UNTRACKED
        return FaceState(blendshapes=bs, confidence=observation.confidence, face_present=True,
                         t_capture=frame.t_capture, frame_index=frame.index, untracked=untracked, **kwargs)
