"""Lower-face estimator of headset mode: a small CNN on the lower-face crop (onnxruntime + numpy).

Why its own network rather than the landmarks under the visor: MediaPipe fits a face under a
headset only some of the time (about 2 frames in 3 on our occluded renders) and then guesses the
upper face from the lower, so its mouth shapes are shaky exactly when the visor sits low; a crop
network needs no fit at all (a user ROI or a mouth camera's frame does), and the crop is the only
input that still carries the lips. Trained on ICT-FaceKit renders with painted headsets
(training/train_headset.py, docs/model_card.md). Eyes, gaze and brows are marked untracked and left
at 0; the head pose is PnP's when the mesh fitted, else untracked (an HMD gives a better one,
engine_plugins/openvr/).

Where the mesh fits, the mouth shapes come from a ridge readout of MediaPipe's lower-face
landmarks instead (``MeshReadout``, ``weights/lower_face_mesh.npz``, fitted on the same renders'
meshes): under a painted visor it reads them at mean r ~0.2, which the crop network does not come
near; jawOpen is the mean of the two (bench_headset.py, docs/model_card.md).
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
SHIPPED_MESH_READOUT = WEIGHTS_DIR / "lower_face_mesh.npz"
NO_MESH_UNTRACKED = HEADSET_UNTRACKED | {"head"}


class LowerFaceModelError(ValueError):
    """The .onnx is not a lower-face model; the text says what was expected."""


# MediaPipe face-mesh points below the nose: lips (outer and inner ring), the chin and jaw line, the
# nose base and the cheeks beside the mouth; what ``mesh_features`` reads.
MESH_POINTS = (0, 2, 13, 14, 17, 18, 37, 39, 40, 43, 50, 57, 58, 61, 78, 80, 81, 82, 83, 84, 87, 88, 91, 93, 95,
               98, 106, 132, 136, 146, 148, 149, 150, 152, 172, 175, 176, 178, 181, 182, 185, 191, 199, 200, 202,
               205, 206, 212, 216, 267, 269, 270, 273, 280, 287, 288, 291, 308, 310, 311, 312, 313, 314, 317, 318,
               321, 323, 324, 327, 335, 361, 365, 375, 377, 378, 379, 397, 400, 402, 405, 406, 409, 415, 422, 425,
               426, 432, 436)


def mesh_features(landmarks: np.ndarray) -> np.ndarray:
    """(478, 3) or (N, 478, 3) normalised MediaPipe landmarks -> (N, 3 * len(MESH_POINTS)): the lower
    face's points about the mouth corners' midpoint, turned so the jaw line is level, in jaw widths
    (so where the face is, how big and how rolled drop out)."""
    p = np.asarray(landmarks, np.float64).reshape(-1, 478, 3)[:, :, :3]
    centre = p[:, [61, 291]].mean(1, keepdims=True)
    jaw = p[:, 323, :2] - p[:, 93, :2]
    ang = np.arctan2(jaw[:, 1], jaw[:, 0])
    c, s = np.cos(-ang)[:, None], np.sin(-ang)[:, None]
    q = (p - centre)[:, list(MESH_POINTS)]
    scale = np.maximum(np.linalg.norm(jaw, axis=1), 1e-6)[:, None]
    x, y = q[..., 0] * c - q[..., 1] * s, q[..., 0] * s + q[..., 1] * c
    return np.concatenate([x / scale, y / scale, q[..., 2] / scale], 1)


class MeshReadout:
    """Lower-face shapes from the face mesh: ``mesh_features`` standardised (z), with random
    Fourier features cos(z P + phase) beside them (a cheap non-linearity: +0.03 mean r over z alone
    under a visor, where a two-layer MLP did no better than z alone), times a ridge fit
    (training/train_headset.py ``fit_mesh_readout``), clipped to 0..1. The .npz holds ``shapes``,
    ``mean``, ``std``, ``proj`` (F, R), ``phase`` (R,), ``weights`` (F+R+1, S) and ``points``
    (checked against MESH_POINTS)."""

    def __init__(self, path: str | Path) -> None:
        try:
            with np.load(path) as z:
                self.shapes = [str(n) for n in z["shapes"]]
                self.mean, self.std, self.weights = z["mean"], z["std"], z["weights"]
                self.proj, self.phase = z["proj"], z["phase"]
                points = tuple(int(i) for i in z["points"])
        except (KeyError, ValueError, OSError) as exc:
            raise LowerFaceModelError(f"{path} is not a lower-face mesh readout ({exc})") from None
        f = len(self.mean)
        if points != MESH_POINTS or self.proj.shape != (f, len(self.phase)) or \
                self.weights.shape != (f + len(self.phase) + 1, len(self.shapes)):
            raise LowerFaceModelError(f"{path} reads other mesh points than this build; refit it with "
                                      "python -m training.train_headset --mesh-out")
        unknown = [n for n in self.shapes if n not in INDEX]
        if unknown:
            raise LowerFaceModelError(f"{path} predicts shapes this build does not know: {unknown}")
        self.columns = np.array([INDEX[n] for n in self.shapes], np.int64)

    @staticmethod
    def design(features: np.ndarray, mean: np.ndarray, std: np.ndarray, proj: np.ndarray,
               phase: np.ndarray) -> np.ndarray:
        """(N, F) mesh features -> (N, F+R+1) what the ridge weights multiply (the fit uses it too)."""
        z = (features - mean) / std
        return np.concatenate([z, np.cos(z @ proj + phase), np.ones((len(z), 1))], 1)

    def read(self, landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) landmarks -> the readout's shapes (``self.columns`` order), 0..1."""
        a = self.design(mesh_features(landmarks), self.mean, self.std, self.proj, self.phase)
        return np.clip(a[0] @ self.weights, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class LowerFaceConfig:
    model_path: str | None = None          # None: blendshape_model/weights/lower_face.onnx
    head_pose: HeadPoseConfig = HeadPoseConfig()
    mirror_average: bool = True            # also run the mirrored crop and average: one-sided shapes stay sided
    threads: int = 1
    # When the face mesh fits, take these shapes from the geometry baseline's lip landmarks instead
    # of the network (bench_headset.py measures both; docs/model_card.md says which wins).
    mesh_shapes: tuple[str, ...] = ()
    # When the face mesh fits, the mouth shapes from MeshReadout (jawOpen: its mean with the
    # network's); None: weights/lower_face_mesh.npz; "" turns it off (the network alone).
    mesh_readout: str | None = None


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
        self._mesh_columns = np.array([INDEX[n] for n in config.mesh_shapes], np.int64)
        self._readout = None
        if config.mesh_readout != "":
            self._readout = MeshReadout(config.mesh_readout or SHIPPED_MESH_READOUT)
        self._geometry = None
        if config.mesh_shapes:
            from avatar_bridge.estimators.geometry import GeometryEstimator
            self._geometry = GeometryEstimator()

    @classmethod
    def from_path(cls, path: str | None = None) -> "LowerFaceEstimator":
        return cls(LowerFaceConfig(model_path=path))

    def reset(self) -> None:
        self._pose.reset()

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
            if self._readout is not None:
                jaw = bs[INDEX["jawOpen"]]
                bs[self._readout.columns] = self._readout.read(observation.landmarks)
                bs[INDEX["jawOpen"]] = (jaw + bs[INDEX["jawOpen"]]) / 2
            if self._geometry is not None:
                face = FaceObservation(frame, observation.landmarks, observation.crop, np.eye(2, 3, dtype=np.float32),
                                       observation.confidence)
                bs[self._mesh_columns] = self._geometry.estimate(face).blendshapes[self._mesh_columns]
            pose = self._pose.solve(observation.landmarks, w, h)
            kwargs = dict(head_rotation=pose.rotation, head_position=pose.position)
            untracked = HEADSET_UNTRACKED
        else:
            self._pose.reset()
            untracked = NO_MESH_UNTRACKED
        return FaceState(blendshapes=bs, confidence=observation.confidence, face_present=True,
                         t_capture=frame.t_capture, frame_index=frame.index, untracked=untracked, **kwargs)
