"""What one rendered frame shows (``RenderParams``) and how frames are sampled: framing the head for
a camera, random plausible frames, eyeLook* shapes that agree with the gaze."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll

# Brown, dark brown, hazel, green, blue, grey (sRGB 0..1).
_IRIS_COLORS = np.array([[0.36, 0.22, 0.12], [0.20, 0.12, 0.07], [0.45, 0.35, 0.18], [0.30, 0.42, 0.25],
                         [0.30, 0.45, 0.60], [0.45, 0.50, 0.55]], np.float32)


def framing(fov_y_deg: float = 30.0, fill: float = 0.5, aspect: float = 1.0) -> tuple[float, float, float]:
    """Head position (metres, camera axes) that puts the face box (brows to chin, ~14 cm, what a
    face detector boxes) across ``fill`` of the image height, centred, for a camera of vertical
    field of view ``fov_y_deg``. Above fill ~0.45 the top of the head leaves the frame."""
    face_height_m, face_centre_y_m, face_front_z_m = 0.14, -0.008, 0.11
    fill = fill if aspect >= 1.0 else fill * aspect   # portrait images: fit the width instead
    distance = face_height_m / fill / (2.0 * math.tan(math.radians(fov_y_deg) / 2.0))
    return (0.0, -face_centre_y_m, -(distance + face_front_z_m))


DEFAULT_FOV_DEG = 30.0
DEFAULT_HEAD_POSITION = framing(DEFAULT_FOV_DEG)


@dataclass(frozen=True)
class RenderParams:
    """Everything that decides one rendered frame. Arrays default to the generic neutral face.

    ``identity`` (100,) ICT identity weights ~ N(0, 1); ``blendshapes`` (52,) ARKit order, 0..1
    (tongueOut has no shape in ICT and is ignored). ``head_rotation`` quaternion (x, y, z, w) and
    ``head_position`` metres, as in ``FaceState``. ``gaze_left``/``gaze_right`` (yaw, pitch)
    radians; the eyeballs are rotated, the eyeLook* shapes (lids only) are left to ``blendshapes``.
    ``skin_tone`` 0 (very light) .. 1 (very dark), or ``skin_albedo`` sRGB 0..1 to set it exactly.
    ``light_direction`` points from the face towards the light, camera axes. ``background`` is
    ``"solid"``, ``"gradient"`` or ``"clutter"`` (procedural, from ``seed``), or pass
    ``background_image`` (HxWx3 uint8 RGB, resized to the frame). ``seed`` drives the skin texture
    and the background. The image size belongs to the ``Renderer`` (one framebuffer per size).
    """

    identity: np.ndarray | None = None
    blendshapes: np.ndarray | None = None
    head_rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    head_position: tuple[float, float, float] = DEFAULT_HEAD_POSITION
    gaze_left: tuple[float, float] = (0.0, 0.0)
    gaze_right: tuple[float, float] = (0.0, 0.0)
    skin_tone: float = 0.3
    skin_albedo: tuple[float, float, float] | None = None
    hair_color: tuple[float, float, float] = (0.12, 0.08, 0.06)
    iris_color: tuple[float, float, float] = (0.36, 0.22, 0.12)
    stubble: float = 0.0
    light_direction: tuple[float, float, float] = (0.35, 0.45, 1.0)
    light_intensity: float = 1.0
    ambient: float = 0.35
    specular: float = 0.12
    background: str = "gradient"
    background_color: tuple[float, float, float] = (0.55, 0.6, 0.65)
    background_image: np.ndarray | None = None
    fov_y_deg: float = DEFAULT_FOV_DEG
    seed: int = 0


def default_params(**overrides) -> RenderParams:
    """``RenderParams`` with the given fields replaced; ``blendshapes`` may also be a dict
    ``{"jawOpen": 0.8}`` (missing names are 0)."""
    bs = overrides.get("blendshapes")
    if isinstance(bs, dict):
        arr = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        for name, value in bs.items():
            arr[INDEX[name]] = value
        overrides["blendshapes"] = arr
    if "fov_y_deg" in overrides and "head_position" not in overrides:
        overrides["head_position"] = framing(overrides["fov_y_deg"])
    return replace(RenderParams(), **overrides)


def gaze_blendshapes(blendshapes: np.ndarray, gaze_left, gaze_right, full_yaw: float = 0.55,
                     full_pitch: float = 0.45) -> np.ndarray:
    """Copy of ``blendshapes`` with eyeLook* set to agree with the gaze angles (radians), so the
    lids follow the eyes as in a real face; ``full_yaw``/``full_pitch`` map to a shape weight 1."""
    out = np.array(blendshapes, np.float32, copy=True)
    for side, (yaw, pitch) in (("Left", gaze_left), ("Right", gaze_right)):
        towards_left = max(yaw, 0.0) / full_yaw
        towards_right = max(-yaw, 0.0) / full_yaw
        # Looking towards the performer's left is "out" for the left eye and "in" for the right.
        out_w, in_w = (towards_left, towards_right) if side == "Left" else (towards_right, towards_left)
        out[INDEX["eyeLookOut" + side]] = min(out_w, 1.0)
        out[INDEX["eyeLookIn" + side]] = min(in_w, 1.0)
        out[INDEX["eyeLookUp" + side]] = min(max(pitch, 0.0) / full_pitch, 1.0)
        out[INDEX["eyeLookDown" + side]] = min(max(-pitch, 0.0) / full_pitch, 1.0)
    return out


def random_params(rng: np.random.Generator, max_yaw_deg: float = 30.0, max_pitch_deg: float = 20.0,
                  max_roll_deg: float = 15.0, fill: tuple[float, float] = (0.35, 0.65)) -> RenderParams:
    """A plausible random frame: a random identity, a few active shapes, a moderate head pose,
    gaze with matching lids, random skin, light and background."""
    bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
    active = rng.choice(len(ARKIT_BLENDSHAPES) - 1, size=rng.integers(0, 8), replace=False)
    bs[active] = rng.uniform(0.0, 1.0, size=len(active)) ** 1.5
    if rng.random() < 0.3:
        bs[INDEX["jawOpen"]] = rng.uniform(0.0, 1.0)
    if rng.random() < 0.2:   # blinks, often both eyes
        bs[INDEX["eyeBlinkLeft"]] = bs[INDEX["eyeBlinkRight"]] = rng.uniform(0.5, 1.0)
    yaw, pitch = rng.uniform(-0.45, 0.45), rng.uniform(-0.3, 0.3)
    gaze_l = (yaw + rng.normal(0, 0.03), pitch)
    gaze_r = (yaw + rng.normal(0, 0.03), pitch)
    bs = gaze_blendshapes(bs, gaze_l, gaze_r)
    fov = rng.uniform(20.0, 50.0)
    x0, y0, z0 = framing(fov, rng.uniform(*fill))
    half = math.tan(math.radians(fov) / 2) * abs(z0)
    light = rng.normal(0, 0.5, 3) + np.array([0.0, 0.3, 1.0])
    return RenderParams(
        identity=rng.normal(0.0, 1.0, 100).astype(np.float32),
        blendshapes=bs,
        head_rotation=from_yaw_pitch_roll(*(float(a) for a in np.radians(
            rng.uniform(-1, 1, 3) * [max_yaw_deg, max_pitch_deg, max_roll_deg]))),
        head_position=(x0 + rng.uniform(-0.15, 0.15) * half, y0 + rng.uniform(-0.15, 0.15) * half, z0),
        gaze_left=gaze_l, gaze_right=gaze_r,
        skin_tone=float(rng.uniform(0.0, 1.0)),
        hair_color=tuple(float(c) for c in rng.uniform(0.03, 0.35) * np.array([1.0, 0.75, 0.55])),
        iris_color=tuple(float(c) for c in _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))] * rng.uniform(0.8, 1.2)),
        stubble=float(rng.uniform(0, 1) if rng.random() < 0.3 else 0.0),
        light_direction=tuple(float(c) for c in light),
        light_intensity=float(rng.uniform(0.6, 1.2)),
        ambient=float(rng.uniform(0.2, 0.5)),
        specular=float(rng.uniform(0.02, 0.15)),
        background=str(rng.choice(["solid", "gradient", "clutter"])),
        background_color=tuple(float(c) for c in rng.uniform(0.05, 0.95, 3)),
        fov_y_deg=float(fov),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
