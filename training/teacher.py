"""MediaPipe's face-blendshapes model as a teacher and a peer (never shipped, never committed).

``../shared/models/face_landmarker.task`` (Apache-2.0) holds ``face_blendshapes.tflite``: an MLP-Mixer
that reads 146 of the 478 face-mesh landmarks as (x, y) in image pixels and gives 52 scores, the
first one ``_neutral`` and then the 51 ARKit shapes other than ``tongueOut``. Which landmarks, and
that they are given in pixels, is written in MediaPipe's ``face_blendshapes_graph.cc``
(``kLandmarksSubsetIdxs``; ``LandmarksToTensorCalculator`` with attributes X, Y and the image size).

``Teacher`` runs that model with the ``ai-edge-litert`` interpreter on any landmark set: our tracker's
(the legacy face mesh), or augmented ones at training time. ``TasksPeer`` runs MediaPipe's whole Face
Landmarker (its own detector and landmark model) through the Tasks API: the peer we measure against.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES

DEFAULT_TASK_PATH = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"

# The 146 landmark indices the model reads, in its input order (face_blendshapes_graph.cc): face
# contour, brows, eyes, nose, lips, and the ten iris points 468-477.
TEACHER_LANDMARKS = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67,
    70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148,
    149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191,
    195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297,
    300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374,
    375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415,
    454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477])

# MediaPipe's output order after ``_neutral`` is ARKit's alphabetical order without tongueOut.
_TEACHER_NAMES = sorted(n for n in ARKIT_BLENDSHAPES if n != "tongueOut")
_TO_ARKIT = np.array([ARKIT_BLENDSHAPES.index(n) for n in _TEACHER_NAMES])
TEACHER_DEAD = ("tongueOut",)  # not in the teacher's output at all


class TeacherUnavailable(RuntimeError):
    """The .task file or the ai-edge-litert interpreter is missing; the text says what to install."""


def _read_member(task_path: Path, name: str) -> bytes:
    if not task_path.exists():
        raise TeacherUnavailable(f"{task_path} not found; the teacher is MediaPipe's face_landmarker.task "
                                 "(see ../shared/models/README.md)")
    with zipfile.ZipFile(task_path) as zf:
        return zf.read(name)


class Teacher:
    """MediaPipe's blendshape model on landmark sets: ``(N, 478, 2) pixels -> (N, 52)`` in ARKit order
    (tongueOut is 0: the teacher has none)."""

    def __init__(self, task_path: Path = DEFAULT_TASK_PATH, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise TeacherUnavailable("the teacher needs ai-edge-litert: pip install -e '.[train]'") from exc
        self._interp = Interpreter(model_content=_read_member(task_path, "face_blendshapes.tflite"),
                                   num_threads=threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]

    def __call__(self, landmarks_px: np.ndarray) -> np.ndarray:
        pts = np.asarray(landmarks_px, np.float32)
        single = pts.ndim == 2
        pts = pts[None] if single else pts
        out = np.zeros((len(pts), len(ARKIT_BLENDSHAPES)), np.float32)
        subset = pts[:, TEACHER_LANDMARKS, :2]
        for i, p in enumerate(subset):  # the model's input is fixed at one face
            self._interp.set_tensor(self._in, p[None])
            self._interp.invoke()
            out[i, _TO_ARKIT] = self._interp.get_tensor(self._out)[1:]
        return out[0] if single else out


class TasksPeer:
    """MediaPipe Face Landmarker (Tasks API, video mode) with its blendshapes: the peer, run on RGB
    frames. ``__call__`` gives (52,) in ARKit order, or None when it finds no face."""

    def __init__(self, task_path: Path = DEFAULT_TASK_PATH) -> None:
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

        options = FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=task_path.read_bytes()),
            running_mode=RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
        self._landmarker = FaceLandmarker.create_from_options(options)

    def __call__(self, image_rgb: np.ndarray, t_ms: int) -> np.ndarray | None:
        import mediapipe as mp

        result = self._landmarker.detect_for_video(
            mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb)), t_ms)
        if not result.face_blendshapes:
            return None
        out = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        for c in result.face_blendshapes[0]:
            if c.category_name in ARKIT_BLENDSHAPES:
                out[ARKIT_BLENDSHAPES.index(c.category_name)] = c.score
        return out

    def close(self) -> None:
        self._landmarker.close()
