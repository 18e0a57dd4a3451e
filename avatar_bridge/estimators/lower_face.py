"""Lower-face estimator of headset mode (onnxruntime + numpy): two small networks on the lower-face
crop, and the full-face landmarks estimator on the mesh wherever MediaPipe still fits it under the visor.

Several readers because each fails where another works. The crop networks need no fit at all (a
user ROI or a mouth camera's frame does, and the crop is the only input that still carries the lips):
the point network places 42 jaw, nose-base and lip points (``LowerPointsNetwork``) and a ridge
readout reads the shapes from them (``PointReadout``), the best reader on renders; the crop network
reads the shapes straight from the pixels. Trained on renders, both read real mouths weakly (the
points follow a real smile at a third of its size). Where the mesh fits (99 % of real frames with a
painted visor), the distilled landmarks network reads real smiles, puckers and speech-sized jaw opens.
So the shapes the real-face dev set can check (``REAL_CHECKED``) take the landmarks estimator where
the mesh fits (jawOpen the larger of it and the crop network's; lip protrusion averaged with
``MeshReadout``, fitted on renders' meshes, as the landmarks network over-reads full lips at rest),
else the crop network; every other lower-face shape comes from the points. The numbers behind each
choice are in docs/model_card.md. Eyes, gaze and brows are marked untracked and left at 0; the head
pose is PnP's when the mesh fitted, else untracked (an HMD gives a better one, engine_plugins/openvr/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.regions import HEADSET_UNTRACKED
from avatar_bridge.tracking.head_pose import HeadPoseConfig, HeadPoseSolver
from avatar_bridge.tracking.lower_face import (JAW_LEFT_END, JAW_RIGHT_END, LOWER_POINTS, LOWER_POINTS_FLIP,
                                               STILL_POINTS)
from avatar_bridge.estimators.base import cpu_session
from avatar_bridge.types import FaceObservation, FaceState, LowerFaceObservation
from blendshape_model import WEIGHTS_DIR

SHIPPED_LOWER_FACE_MODEL = WEIGHTS_DIR / "lower_face.onnx"
SHIPPED_MESH_READOUT = WEIGHTS_DIR / "lower_face_mesh.npz"
SHIPPED_POINTS_MODEL = WEIGHTS_DIR / "lower_face_points.onnx"
SHIPPED_POINTS_READOUT = WEIGHTS_DIR / "lower_face_points.npz"
NO_MESH_UNTRACKED = HEADSET_UNTRACKED | {"head"}
JAW = INDEX["jawOpen"]


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
    q = (p - centre)[:, list(MESH_POINTS)]
    x, y, scale = level_points(q, jaw)
    return np.concatenate([x, y, q[..., 2] / scale], 1)


def level_points(q: np.ndarray, jaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, P, >=2) points about a centre and (N, 2) jaw-line vectors -> (x, y) turned so the jaw line
    is level, in jaw widths, and the (N, 1) jaw widths."""
    ang = np.arctan2(jaw[:, 1], jaw[:, 0])
    c, s = np.cos(-ang)[:, None], np.sin(-ang)[:, None]
    scale = np.maximum(np.linalg.norm(jaw, axis=1), 1e-6)[:, None]
    return (q[..., 0] * c - q[..., 1] * s) / scale, (q[..., 0] * s + q[..., 1] * c) / scale, scale


def point_features(points: np.ndarray) -> np.ndarray:
    """(K, 2) or (N, K, 2) pixel ``LOWER_POINTS`` -> (N, 2K): about the mean of the points the
    mouth does not move (upper jaw line, nose base), turned so the line between the jaw's two upper
    ends is level, in that line's lengths. Averaging several points for the frame keeps one point's
    error from moving every feature."""
    p = np.asarray(points, np.float64).reshape(-1, len(LOWER_POINTS), 2)
    centre = p[:, STILL_POINTS].mean(1, keepdims=True)
    jaw = p[:, JAW_LEFT_END].mean(1) - p[:, JAW_RIGHT_END].mean(1)
    x, y, _ = level_points(p - centre, jaw)
    return np.concatenate([x, y], 1)


class RidgeReadout:
    """Lower-face shapes from a face's points: its features standardised (z), with random Fourier
    features cos(z P + phase) beside them (a cheap non-linearity: +0.03 mean r over z alone under a
    visor, where a two-layer MLP did no better than z alone), times a ridge fit
    (training/train_headset.py ``fit_readout``), clipped to 0..1. The .npz holds ``shapes``,
    ``mean``, ``std``, ``proj`` (F, R), ``phase`` (R,), ``weights`` (F+R+1, S) and ``points`` (which
    points the features were made of, checked against ``POINTS``). Subclasses say what they read."""

    POINTS: tuple[int, ...] = ()
    KIND = ""      # what it reads, for the errors: "mesh", "point"
    REFIT = ""

    def __init__(self, path: str | Path) -> None:
        try:
            with np.load(path) as z:
                self.shapes = [str(n) for n in z["shapes"]]
                self.mean, self.std, self.weights = z["mean"], z["std"], z["weights"]
                self.proj, self.phase = z["proj"], z["phase"]
                points = tuple(int(i) for i in z["points"])
        except (KeyError, ValueError, OSError) as exc:
            raise LowerFaceModelError(f"{path} is not a lower-face {self.KIND} readout ({exc})") from None
        f = len(self.mean)
        if points != self.POINTS or self.proj.shape != (f, len(self.phase)) or \
                self.weights.shape != (f + len(self.phase) + 1, len(self.shapes)):
            raise LowerFaceModelError(f"{path} reads other {self.KIND} points than this build; refit it with "
                                      f"{self.REFIT}")
        unknown = [n for n in self.shapes if n not in INDEX]
        if unknown:
            raise LowerFaceModelError(f"{path} predicts shapes this build does not know: {unknown}")
        self.columns = np.array([INDEX[n] for n in self.shapes], np.int64)

    @staticmethod
    def design(features: np.ndarray, mean: np.ndarray, std: np.ndarray, proj: np.ndarray,
               phase: np.ndarray) -> np.ndarray:
        """(N, F) features -> (N, F+R+1) what the ridge weights multiply (the fit uses it too)."""
        z = (features - mean) / std
        return np.concatenate([z, np.cos(z @ proj + phase), np.ones((len(z), 1))], 1)

    def read_features(self, features: np.ndarray) -> np.ndarray:
        """(1, F) features -> the readout's shapes (``self.columns`` order), 0..1."""
        a = self.design(features, self.mean, self.std, self.proj, self.phase)
        return np.clip(a[0] @ self.weights, 0.0, 1.0).astype(np.float32)


class MeshReadout(RidgeReadout):
    """``RidgeReadout`` of MediaPipe's face mesh (``mesh_features``)."""

    POINTS = MESH_POINTS
    KIND = "mesh"
    REFIT = "python -m training.train_headset --mesh-out"

    def read(self, landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) normalised landmarks -> the readout's shapes."""
        return self.read_features(mesh_features(landmarks))


class PointReadout(RidgeReadout):
    """``RidgeReadout`` of the point network's lower-face points (``point_features``)."""

    POINTS = tuple(int(i) for i in LOWER_POINTS)
    KIND = "point"
    REFIT = "python -m training.train_lower_points"

    def read(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) pixel points -> the readout's shapes."""
        return self.read_features(point_features(points))


class LowerPointsNetwork:
    """The point network (training/train_lower_points.py): the lower-face crop -> ``LOWER_POINTS`` in
    frame pixels. Also runs the mirrored crop and averages the two (the twin points swapped back), so a
    face and its mirror image get mirror-image points and a left and a right smile read alike."""

    def __init__(self, path: str | Path, threads: int = 1, mirror_average: bool = True) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no lower-face point network at {path}; train one with "
                                    "python -m training.train_lower_points")
        self.session = cpu_session(path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            points, self.crop_size = json.loads(meta["points"]), int(meta["crop_size"])
        except (KeyError, ValueError):
            raise LowerFaceModelError(f"{path} has no 'points'/'crop_size' metadata; export it with "
                                      "python -m training.train_lower_points") from None
        if points != [int(i) for i in LOWER_POINTS]:
            raise LowerFaceModelError(f"{path} places other points than this build reads; retrain it with "
                                      "python -m training.train_lower_points")
        self.mirror_average = mirror_average

    def points(self, crop: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(S, S, 3) uint8 crop cut from ``box`` (x, y, w, h pixels) -> (K, 2) frame pixels."""
        x = np.ascontiguousarray(crop, np.float32).transpose(2, 0, 1)[None] / 255.0
        if self.mirror_average:
            out = self.session.run(None, {"crop": np.concatenate([x, x[..., ::-1]])})[0]
            twin = out[1][LOWER_POINTS_FLIP] * (-1.0, 1.0) + (1.0, 0.0)
            p = (out[0] + twin) / 2
        else:
            p = self.session.run(None, {"crop": x})[0][0]
        return p * box[2:] + box[:2]


@dataclass(frozen=True)
class LowerFaceConfig:
    model_path: str | None = None          # None: blendshape_model/weights/lower_face.onnx
    head_pose: HeadPoseConfig = HeadPoseConfig()
    mirror_average: bool = True            # also run the mirrored crop and average: one-sided shapes stay sided
    threads: int = 1
    # Where the face mesh fits under the visor, the shapes this network reads come from this
    # full-face estimator on the mesh instead, jawOpen the larger of the two (each catches real jaw
    # opens the other misses): "landmarks" (what `auto` runs), "geometry", or "" (not used).
    # Chosen on real faces with painted visors (python -m training.evaluate_real --headset,
    # docs/model_card.md "Lower-face network"): the crop network alone reads no real smile or pucker.
    mesh_estimator: str = "landmarks"
    # Where the mesh fits, MeshReadout (fitted on renders' meshes) is averaged into READOUT_AVERAGED;
    # with mesh_estimator "" it gives all its shapes instead (jawOpen: its mean with the network's).
    # None: weights/lower_face_mesh.npz; "" turns it off.
    mesh_readout: str | None = None
    # The point network and its readout (``LowerPointsNetwork``, ``PointReadout``): the lower-face
    # shapes outside REAL_CHECKED, on every frame. None: weights/lower_face_points.onnx / .npz; "" off.
    points_model: str | None = None
    points_readout: str | None = None


# The lower-face shapes the real-face dev set can check: MediaPipe's Face Landmarker (the peer) moves
# them on its clips (std > 0.05; python -m training.evaluate_real --headset compares each run with it).
# They keep the readers real faces chose (the mesh estimator where the mesh fits, else the crop
# network); the point network, the best reader on renders and worse than those on real faces for
# these, gives the others, which no real clip here shows (docs/model_card.md "Lower-face network").
REAL_CHECKED = ("jawOpen", "mouthPucker", "mouthSmileLeft", "mouthSmileRight", "mouthRollUpper", "mouthShrugLower",
                "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
                "mouthUpperUpRight")

# The lip-protrusion shapes, where the landmarks estimator reads full lips at rest as a pucker on
# real faces (28 of 187 neutral frames under a visor); averaged with the readout: 4, and every real
# pucker still caught.
READOUT_AVERAGED = ("mouthPucker", "mouthFunnel")


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
        self._mesh = None
        if config.mesh_estimator:
            from avatar_bridge.estimators.registry import create_estimator
            self._mesh = create_estimator(config.mesh_estimator)
        # The mesh estimator solves the head pose on the same landmarks: take it rather than solve twice.
        self._pose = HeadPoseSolver(config.head_pose) if self._mesh is None else None
        self._readout = None
        if config.mesh_readout != "":
            self._readout = MeshReadout(config.mesh_readout or SHIPPED_MESH_READOUT)
            self._averaged = np.array([INDEX[n] for n in READOUT_AVERAGED], np.int64)
            self._averaged_in_readout = np.array([self._readout.shapes.index(n) for n in READOUT_AVERAGED], np.int64)
        self._points = None
        if config.points_model != "":
            self._points = LowerPointsNetwork(config.points_model or SHIPPED_POINTS_MODEL, config.threads,
                                              config.mirror_average)
            self._point_readout = PointReadout(config.points_readout or SHIPPED_POINTS_READOUT)
            self._point_columns = np.array([INDEX[n] for n in self._point_readout.shapes if n not in REAL_CHECKED],
                                           np.int64)
        # Where the mesh fits, what the mesh estimator gives: the shapes real faces check, or with no
        # point network every shape the crop network reads.
        self._from_mesh = self.columns if self._points is None else np.array([INDEX[n] for n in REAL_CHECKED], np.int64)

    @classmethod
    def from_path(cls, path: str | None = None) -> "LowerFaceEstimator":
        return cls(LowerFaceConfig(model_path=path))

    def reset(self) -> None:
        (self._mesh or self._pose).reset()

    def lower_face(self, crop: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 crop -> the model's shapes (in ``self.columns`` order), 0..1."""
        x = np.ascontiguousarray(crop, np.float32).transpose(2, 0, 1)[None] / 255.0
        if self._flip is None or not self.config.mirror_average:
            return self.session.run(None, {"crop": x})[0][0]
        out = self.session.run(None, {"crop": np.concatenate([x, x[..., ::-1]])})[0]
        return (out[0] + out[1][self._flip]) / 2

    def point_shapes(self, observation: LowerFaceObservation) -> np.ndarray:
        """(52,) every shape the point readout gives, from the observation's crop (0 elsewhere)."""
        bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        bs[self._point_readout.columns] = self._point_readout.read(self._points.points(observation.crop, observation.box))
        return bs

    def estimate(self, observation: LowerFaceObservation) -> FaceState:
        frame = observation.frame
        bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        bs[self.columns] = np.clip(self.lower_face(observation.crop), 0.0, 1.0)
        if self._points is not None:
            bs[self._point_columns] = self.point_shapes(observation)[self._point_columns]
        kwargs = {}
        if observation.landmarks is not None:
            h, w = frame.image.shape[:2]
            readout = self._readout.read(observation.landmarks) if self._readout is not None else None
            if self._mesh is not None:
                face = FaceObservation(frame, observation.landmarks, observation.crop, np.eye(2, 3, dtype=np.float32),
                                       observation.confidence)
                mesh = self._mesh.estimate(face)
                jaw = max(bs[JAW], mesh.blendshapes[JAW])
                bs[self._from_mesh] = mesh.blendshapes[self._from_mesh]
                bs[JAW] = jaw
                if readout is not None:
                    bs[self._averaged] = (mesh.blendshapes[self._averaged] + readout[self._averaged_in_readout]) / 2
                kwargs = dict(head_rotation=mesh.head_rotation, head_position=mesh.head_position)
            else:
                if readout is not None:
                    jaw = bs[JAW]
                    bs[self._readout.columns] = readout
                    bs[JAW] = (jaw + bs[JAW]) / 2
                pose = self._pose.solve(observation.landmarks, w, h)
                kwargs = dict(head_rotation=pose.rotation, head_position=pose.position)
            untracked = HEADSET_UNTRACKED
        else:
            (self._mesh or self._pose).reset()   # the pose is solved afresh when the mesh is back
            untracked = NO_MESH_UNTRACKED
        return FaceState(blendshapes=bs, confidence=observation.confidence, face_present=True,
                         t_capture=frame.t_capture, frame_index=frame.index, untracked=untracked, **kwargs)
