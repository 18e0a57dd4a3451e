"""The plain dataclasses passed between pipeline stages (see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES

IDENTITY_QUATERNION = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Frame:
    """One captured image: ``image`` is HxWx3 uint8 RGB, ``t_capture`` monotonic seconds."""

    image: np.ndarray
    index: int
    t_capture: float
    source: str


@dataclass(frozen=True)
class FaceObservation:
    """What the tracker found in a frame; the tracker returns ``None`` when there is no face.

    ``landmarks`` is (478, 3) float32: x, y normalised to image width/height, z in the same scale
    as x (MediaPipe's convention). ``crop`` is the (S, S, 3) uint8 RGB face aligned by the eyes;
    ``crop_transform`` is the 2x3 float32 affine taking image pixels to crop pixels.
    """

    frame: Frame
    landmarks: np.ndarray
    crop: np.ndarray
    crop_transform: np.ndarray
    confidence: float


@dataclass(frozen=True)
class LowerFaceObservation:
    """Headset mode's tracker output (``tracking/headset.py``): the lower face, wherever it was found.

    ``crop`` is the (S, S, 3) uint8 RGB lower face (``tracking/lower_face.py``), cut from ``box``
    (x, y, w, h image pixels). ``source`` says where the box came from: ``"face"`` (the face mesh
    fitted, ``landmarks`` as in FaceObservation), ``"held"`` (its last fit, held a moment), ``"roi"``
    (the region the user set) or ``"frame"`` (a mouth camera: the whole frame); only ``"face"`` has
    landmarks.
    """

    frame: Frame
    crop: np.ndarray
    box: tuple[float, float, float, float]
    source: str
    landmarks: np.ndarray | None = None
    confidence: float = 1.0


@dataclass(frozen=True)
class FaceState:
    """Everything an avatar needs for one frame.

    ``blendshapes`` (52,) float32 in [0, 1], ARKit order (``ARKIT_BLENDSHAPES``).
    ``head_rotation`` quaternion (x, y, z, w) taking head axes (x = performer's left, y up,
    z out of the face) to camera axes (x = image right, y up, z towards the viewer), so identity
    is a head looking straight into the camera. ``head_position`` metres in camera axes
    (z < 0 in front of the camera). ``gaze_left``/``gaze_right`` (yaw, pitch) radians per eye,
    yaw > 0 towards the performer's left, pitch > 0 up. Times are monotonic seconds.
    ``untracked`` names the face regions (``avatar_bridge.regions.REGIONS``) nobody saw this frame,
    e.g. eyes, gaze and brows under a headset; their values are neutral, not estimates.
    """

    blendshapes: np.ndarray
    head_rotation: tuple[float, float, float, float] = IDENTITY_QUATERNION
    head_position: tuple[float, float, float] = (0.0, 0.0, -0.5)
    gaze_left: tuple[float, float] = (0.0, 0.0)
    gaze_right: tuple[float, float] = (0.0, 0.0)
    confidence: float = 0.0
    face_present: bool = False
    t_capture: float = 0.0
    t_publish: float = 0.0
    frame_index: int = -1
    untracked: frozenset[str] = frozenset()

    @staticmethod
    def neutral(**kwargs) -> "FaceState":
        """A rest face (all shapes 0), e.g. for "no face yet"."""
        return FaceState(blendshapes=np.zeros(len(ARKIT_BLENDSHAPES), np.float32), **kwargs)

    def blendshape(self, name: str) -> float:
        return float(self.blendshapes[ARKIT_BLENDSHAPES.index(name)])
