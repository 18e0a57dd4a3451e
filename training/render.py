"""Headless renderer of the ICT-FaceKit morphable face, for synthetic training data and the demo clip.

``FaceModel`` holds the mesh and its shapes (ARKit order), ``Renderer`` draws one ``RenderParams``
into an RGB image with its ground truth (``RenderResult``). OpenGL through moderngl on EGL, so it
runs headless on Mesa llvmpipe; numpy + moderngl + OpenCV only (no torch).

Axes: the model's own axes are the project's head axes (x = performer's left, y up, z out of the
face), in centimetres; the camera is the project's (x = image right, y up, z towards the viewer,
looking down -z), in metres. See ``avatar_bridge.types.FaceState``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import moderngl
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll, gaze_quaternion, quat_to_matrix

# The shared data folder sits beside the checkout (/work/shared next to /work/main).
DEFAULT_ICT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"

# Vertex ranges from the ICT-FaceKit README (inclusive start, exclusive end).
_MOUTH_SOCKET = (11248, 13294)
_EYE_SOCKETS = (13294, 14062)
_EYEBALL_LEFT = (21451, 23021)   # sclera 21451-22220, iris 22221-23020
_EYEBALL_RIGHT = (23021, 24591)
_SCLERA_LEFT = (21451, 22221)
_SCLERA_RIGHT = (23021, 23791)

# Parts the shader colours differently (float attribute ``in_part``).
PART_SKIN, PART_HEAD, PART_MOUTH, PART_EYE_SOCKET, PART_GUMS, PART_TEETH = 0, 1, 2, 3, 4, 5
PART_SCLERA, PART_IRIS, PART_LASHES = 6, 7, 8
_MATERIAL_PART = {
    "M_Face": PART_SKIN, "M_BackHead": PART_HEAD, "M_GumsTongue": PART_GUMS, "M_Teeth": PART_TEETH,
    "M_ScleraLeft": PART_SCLERA, "M_ScleraRight": PART_SCLERA, "M_IrisLeft": PART_IRIS,
    "M_IrisRight": PART_IRIS, "M_EyeLashes": PART_LASHES,
}
# M_LacrimalFluid, M_EyeBlend and M_EyeOcclusion are transparent overlay layers in the source
# rig; drawn opaque they hide the eyes, so they are left out.

_IRIS_RADIUS_CM = 0.64           # measured on the neutral mesh: the iris disc ends ~0.65 cm off-axis
_LOWER_LASH_BELOW_Y_CM = 3.5     # eye centres are at y ~3.6 cm on the neutral mesh
_CM = 0.01

# Skin albedo (sRGB 0..1) from very light to very dark; ``skin_tone`` interpolates along it.
_SKIN_TONES = np.array([
    [0.96, 0.80, 0.71], [0.90, 0.72, 0.60], [0.80, 0.60, 0.46], [0.66, 0.46, 0.33],
    [0.50, 0.33, 0.23], [0.36, 0.23, 0.16], [0.24, 0.15, 0.11],
], np.float32)
# Brown, dark brown, hazel, green, blue, grey (sRGB 0..1).
_IRIS_COLORS = np.array([[0.36, 0.22, 0.12], [0.20, 0.12, 0.07], [0.45, 0.35, 0.18], [0.30, 0.42, 0.25],
                         [0.30, 0.45, 0.60], [0.45, 0.50, 0.55]], np.float32)


def _matrix(q) -> np.ndarray:
    return np.array(quat_to_matrix(q), np.float64)


_quat_to_matrix = _matrix   # the name training/make_canonical_face.py imports


def quat_from_euler(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> tuple[float, ...]:
    """Quaternion (x, y, z, w) of a head turned by ``yaw`` (radians, > 0 = towards the performer's
    left), ``pitch`` (> 0 = CHIN UP, the opposite of ``conventions.from_yaw_pitch_roll``'s ARKit
    nose-down pitch) and ``roll`` (> 0 = counter-clockwise in the image): Ry(yaw) Rx(-pitch) Rz(roll)."""
    return from_yaw_pitch_roll(yaw, -pitch, roll)


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


@dataclass(frozen=True)
class RenderResult:
    """One rendered frame and its ground truth. ``landmarks68`` (68, 2) float32 pixels (x right,
    y down) of the Multi-PIE 68 points; the other fields echo ``RenderParams`` in ``FaceState``
    units."""

    image: np.ndarray
    blendshapes: np.ndarray
    head_rotation: tuple[float, float, float, float]
    head_position: tuple[float, float, float]
    gaze_left: tuple[float, float]
    gaze_right: tuple[float, float]
    landmarks68: np.ndarray


@dataclass
class FaceModel:
    """The ICT-FaceKit mesh, triangulated, with its expression shapes in ARKit order."""

    neutral: np.ndarray              # (N, 3) float32 cm
    identity_deltas: np.ndarray      # (100, N, 3) float32 cm
    expression_deltas: np.ndarray    # (53, N, 3) float32 cm, ICT order
    arkit_to_ict: np.ndarray         # (53, 52) float32: ICT weights = arkit_to_ict @ ARKit weights
    triangles: np.ndarray            # (T, 3) int32 into the mesh vertices (rendered parts only)
    corner_vertex: np.ndarray        # (M,) int32: mesh vertex of each GL vertex (a vertex/UV/part triple)
    corner_uv: np.ndarray            # (M, 2) float32
    corner_part: np.ndarray          # (M,) float32 PART_*
    corner_eye: np.ndarray           # (M, 2) float32 eyeball-local (off-axis radius cm, front z cm)
    gl_triangles: np.ndarray         # (T, 3) int32 into the GL vertices
    landmarks68: np.ndarray          # (68,) int32 vertex indices

    @staticmethod
    def load(path: str | Path = DEFAULT_ICT_PATH) -> "FaceModel":
        """Read the packed ICT-FaceKit archive (see its README); raises FileNotFoundError with the
        expected location when it is missing."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"ICT-FaceKit archive not found at {path}; pass FaceModel.load(path=...) "
                                    "or put ict_facekit.npz there (see /work/shared/data/ict-facekit/README.md)")
        d = np.load(path)
        names = [str(n) for n in d["expression_names"]]
        arkit_to_ict = np.zeros((len(names), len(ARKIT_BLENDSHAPES)), np.float32)
        for i, name in enumerate(names):
            base = name[:-2] if name.endswith(("_L", "_R")) else name
            arkit = base + {"_L": "Left", "_R": "Right"}.get(name[-2:], "")
            if arkit not in INDEX:          # browInnerUp_L/_R and cheekPuff_L/_R halves
                arkit = base
            arkit_to_ict[i, INDEX[arkit]] = 1.0

        faces, face_uvs = d["faces"], d["face_uvs"]
        materials = [str(m) for m in d["material_names"]]
        part_of_material = np.array([_MATERIAL_PART.get(m, -1) for m in materials])
        part = part_of_material[d["face_material"]]
        # M_BackHead also covers the mouth and eye sockets: tell them apart by vertex range.
        top = faces.max(axis=1)
        in_range = lambda r: (top >= r[0]) & (top < r[1])  # noqa: E731
        part = np.where((part == PART_HEAD) & in_range(_MOUTH_SOCKET), PART_MOUTH, part)
        part = np.where((part == PART_HEAD) & in_range(_EYE_SOCKETS), PART_EYE_SOCKET, part)
        # Lower-lash cards drawn opaque read as a heavy dark rim under the eye; upper lashes only.
        corners = np.where(faces >= 0, faces, faces[:, :1])
        mean_y = d["neutral"][corners, 1].mean(axis=1)
        part = np.where((part == PART_LASHES) & (mean_y < _LOWER_LASH_BELOW_Y_CM), -1, part)
        keep = part >= 0
        faces, face_uvs, part = faces[keep], face_uvs[keep], part[keep]

        # Quads (0,1,2,3) -> (0,1,2) + (0,2,3); triangles are padded with -1.
        quad = faces[:, 3] >= 0
        tri_v = np.concatenate([faces[:, :3], faces[quad][:, [0, 2, 3]]])
        tri_uv = np.concatenate([face_uvs[:, :3], face_uvs[quad][:, [0, 2, 3]]])
        tri_part = np.concatenate([part, part[quad]])

        # GL vertices are unique (vertex, uv, part) triples: UV seams and material borders split.
        triples = np.stack([tri_v.ravel(), tri_uv.ravel(), np.repeat(tri_part, 3)], axis=1)
        unique, inverse = np.unique(triples, axis=0, return_inverse=True)
        neutral = d["neutral"].astype(np.float32)
        corner_eye = np.zeros((len(unique), 2), np.float32)
        for lo, hi in (_EYEBALL_LEFT, _EYEBALL_RIGHT):
            centre = _eyeball_centre(neutral, lo)
            sel = (unique[:, 0] >= lo) & (unique[:, 0] < hi)
            local = neutral[unique[sel, 0]] - centre
            corner_eye[sel, 0] = np.hypot(local[:, 0], local[:, 1])
            corner_eye[sel, 1] = local[:, 2]
        return FaceModel(
            neutral=neutral,
            identity_deltas=d["identity_deltas"].astype(np.float32),
            expression_deltas=d["expression_deltas"].astype(np.float32),
            arkit_to_ict=arkit_to_ict,
            triangles=tri_v.astype(np.int32),
            corner_vertex=unique[:, 0].astype(np.int32),
            corner_uv=d["uvs"][unique[:, 1]].astype(np.float32),
            corner_part=unique[:, 2].astype(np.float32),
            corner_eye=corner_eye,
            gl_triangles=inverse.reshape(-1, 3).astype(np.int32),
            landmarks68=d["landmarks68"].astype(np.int32),
        )

    def arkit_to_ict_deltas(self, weights52: np.ndarray) -> np.ndarray:
        """(N, 3) cm offset of the ARKit weights (52,) from the neutral face. browInnerUp and
        cheekPuff drive both ICT halves; tongueOut has no ICT shape and is ignored."""
        w = self.arkit_to_ict @ np.asarray(weights52, np.float32)
        active = np.flatnonzero(w)
        if len(active) == 0:
            return np.zeros_like(self.neutral)
        return np.tensordot(w[active], self.expression_deltas[active], axes=1)

    def identity_mesh(self, identity: np.ndarray | None) -> np.ndarray:
        """(N, 3) cm neutral-expression mesh of an identity (100,) weights; None = generic."""
        if identity is None or not np.any(identity):
            return self.neutral.copy()
        w = np.asarray(identity, np.float32)
        active = np.flatnonzero(w)
        return self.neutral + np.tensordot(w[active], self.identity_deltas[active], axes=1)


def _eyeball_centre(vertices: np.ndarray, sclera_start: int) -> np.ndarray:
    """Least-squares sphere centre of one sclera (the eyeball rotates about it)."""
    lo, hi = (_SCLERA_LEFT if sclera_start == _SCLERA_LEFT[0] else _SCLERA_RIGHT)
    p = vertices[lo:hi].astype(np.float64)
    a = np.c_[2 * p, np.ones(len(p))]
    sol = np.linalg.lstsq(a, (p ** 2).sum(1), rcond=None)[0]
    return sol[:3].astype(np.float32)


def _vertex_normals(v: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a = v[tris[:, 0]]
    e1, e2 = v[tris[:, 1]] - a, v[tris[:, 2]] - a
    # Area-weighted face normals, written out because np.cross is several times slower here.
    fn = (e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1], e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
          e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    n = np.empty_like(v)
    for axis, f in enumerate(fn):
        n[:, axis] = sum(np.bincount(tris[:, k], weights=f, minlength=len(v)) for k in range(3))
    n /= np.sqrt((n * n).sum(axis=1, keepdims=True)) + 1e-12
    return n.astype(np.float32)


def perspective(fov_y_deg: float, aspect: float, near: float = 0.02, far: float = 20.0) -> np.ndarray:
    """OpenGL projection matrix (row-major, for column vectors)."""
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    return np.array([
        [f / aspect, 0, 0, 0], [0, f, 0, 0],
        [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0],
    ], np.float32)


_MESH_VS = """
#version 330
uniform mat3 u_rot;
uniform vec3 u_trans;
uniform mat4 u_proj;
in vec3 in_pos;      // head axes, metres
in vec3 in_normal;
in vec2 in_uv;
in float in_part;
in vec2 in_eye;
out vec3 v_pos;      // camera axes
out vec3 v_normal;
out vec2 v_uv;
flat out int v_part;
out vec2 v_eye;
out float v_head_z;
void main() {
    v_pos = u_rot * in_pos + u_trans;
    v_head_z = in_pos.z;
    v_normal = u_rot * in_normal;
    v_uv = in_uv;
    v_part = int(in_part + 0.5);
    v_eye = in_eye;
    gl_Position = u_proj * vec4(v_pos, 1.0);
}
"""

_MESH_FS = """
#version 330
uniform sampler2D u_skin;     // r: tone variation, g: lips, b: brows, a: stubble
uniform vec3 u_skin_albedo;   // linear
uniform vec3 u_lip_albedo;
uniform vec3 u_hair_albedo;
uniform vec3 u_iris_albedo;
uniform float u_stubble;
uniform vec3 u_light_dir;
uniform float u_light;
uniform float u_ambient;
uniform float u_specular;
uniform float u_iris_radius;
in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
flat in int v_part;
in vec2 v_eye;
in float v_head_z;
out vec4 f_color;
void main() {
    vec3 albedo;
    // No shadows are cast, so the mouth gets darker the deeper a point lies behind the lips
    // (lips at z ~11 cm, back of the mouth ~4 cm, head axes).
    float depth_shade = clamp((v_head_z - 0.06) / 0.05, 0.12, 1.0);
    float shine = u_specular;
    float occlusion = 1.0;
    vec4 t = texture(u_skin, fract(v_uv));
    if (v_part == 0 || v_part == 1) {
        albedo = u_skin_albedo * (0.78 + 0.44 * t.r);
        if (v_part == 0) {
            albedo = mix(albedo, u_lip_albedo * (0.85 + 0.3 * t.r), t.g);
            albedo = mix(albedo, u_hair_albedo, t.b);
            albedo = mix(albedo, u_hair_albedo, t.a * u_stubble * 0.8);
            shine *= 1.0 + 1.5 * t.g;
        }
    } else if (v_part == 2) {            // mouth socket: dark, unlit by the key light
        albedo = vec3(0.10, 0.025, 0.025); occlusion = 0.4 * depth_shade; shine = 0.0;
    } else if (v_part == 3) {
        albedo = u_skin_albedo * vec3(0.6, 0.35, 0.35); occlusion = 0.4; shine = 0.0;
    } else if (v_part == 4) {
        albedo = vec3(0.40, 0.09, 0.09); occlusion = 0.55 * depth_shade;
    } else if (v_part == 5) {
        albedo = vec3(0.80, 0.76, 0.66); occlusion = 0.8 * depth_shade;
    } else if (v_part == 6) {
        // The sclera mesh includes the clear cornea in front of the iris: let the iris show.
        if (v_eye.y > 0.0 && v_eye.x < u_iris_radius) discard;
        albedo = vec3(0.80, 0.76, 0.74); shine = 0.6;
    } else if (v_part == 7) {
        float r = v_eye.x / u_iris_radius;
        float pupil = 1.0 - smoothstep(0.33, 0.38, r);
        float limbus = smoothstep(0.8, 1.0, r);
        albedo = u_iris_albedo * (0.8 + 0.4 * fract(sin(atan(v_pos.y, v_pos.x) * 40.0) * 3.0));
        albedo = mix(albedo, u_iris_albedo * 0.25, limbus);
        albedo = mix(albedo, vec3(0.01), pupil);
        shine = 1.0;
    } else {
        // Eyelash cards (u runs along the lid): keep thin strands so they read as lashes,
        // not as a solid black band.
        if (fract(v_uv.x * 140.0) > 0.3) discard;
        albedo = u_hair_albedo * 0.3; shine = 0.0;
    }
    vec3 n = normalize(v_normal);
    vec3 view = normalize(-v_pos);
    if (dot(n, view) < 0.0) n = -n;      // back faces of thin parts (lashes, lips' inside)
    vec3 l = normalize(u_light_dir);
    float diffuse = max(dot(n, l), 0.0);
    float spec = pow(max(dot(n, normalize(l + view)), 0.0), 40.0);
    // A sky-ish ambient: more from above, less from below.
    float amb = u_ambient * (0.75 + 0.25 * n.y);
    vec3 lin = albedo * (amb + u_light * diffuse) * occlusion + shine * u_light * spec * occlusion;
    f_color = vec4(pow(clamp(lin, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""

_BG_VS = """
#version 330
in vec2 in_pos;
out vec2 v_uv;
void main() { v_uv = vec2(in_pos.x, -in_pos.y) * 0.5 + 0.5; gl_Position = vec4(in_pos, 0.999, 1.0); }
"""
_BG_FS = """
#version 330
uniform sampler2D u_bg;
in vec2 v_uv;
out vec4 f_color;
void main() { f_color = vec4(texture(u_bg, v_uv).rgb, 1.0); }
"""

_BAKE_VS = """
#version 330
in vec2 in_uv;
in vec3 in_pos;
out vec3 v_pos;
void main() { v_pos = in_pos; gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0); }
"""
_BAKE_FS = """
#version 330
in vec3 v_pos;
out vec4 f_color;
void main() { f_color = vec4(v_pos, 1.0); }
"""

_TEXTURE_SIZE = 512
_TEXTURE_CACHE = 16       # skin textures kept per renderer, by seed


def _srgb_to_linear(c) -> np.ndarray:
    return np.power(np.clip(np.asarray(c, np.float32), 0, 1), 2.2)


class Renderer:
    """One headless GL context and framebuffer of ``width`` x ``height``; call ``render`` many
    times. Not thread-safe: use one per thread or process. ``close`` (or ``with``) frees it."""

    def __init__(self, width: int = 256, height: int = 256, model: FaceModel | None = None,
                 supersample: int = 2) -> None:
        self.width, self.height = int(width), int(height)
        self.model = model if model is not None else FaceModel.load()
        self.ctx = moderngl.create_standalone_context(backend="egl")
        # Anti-aliasing by drawing at ``supersample`` x the size and area-averaging down: on
        # llvmpipe this is ~2x cheaper than 4x MSAA at the same quality.
        self._ss = max(1, int(supersample))
        size = (self.width * self._ss, self.height * self._ss)
        self._size = size
        self._fbo = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer(size, 4)],
                                         depth_attachment=self.ctx.depth_renderbuffer(size))

        m = self.model
        self._mesh_prog = self.ctx.program(vertex_shader=_MESH_VS, fragment_shader=_MESH_FS)
        static = np.concatenate([m.corner_uv, m.corner_part[:, None], m.corner_eye], axis=1).astype("f4")
        self._static_vbo = self.ctx.buffer(static.tobytes())
        self._dynamic_vbo = self.ctx.buffer(reserve=len(m.corner_vertex) * 6 * 4, dynamic=True)
        # Lash cards are single-sided and seen from both sides; everything else is drawn with
        # back faces culled (about half the raster work on llvmpipe), so lashes go last, apart.
        lash = m.corner_part[m.gl_triangles[:, 0]] == PART_LASHES
        self._n_solid = int((~lash).sum()) * 3
        self._n_lash = int(lash.sum()) * 3
        tris = np.concatenate([m.gl_triangles[~lash], m.gl_triangles[lash]])
        self._ibo = self.ctx.buffer(tris.astype("i4").tobytes())
        self._mesh_vao = self.ctx.vertex_array(self._mesh_prog, [
            (self._dynamic_vbo, "3f 3f", "in_pos", "in_normal"),
            (self._static_vbo, "2f 1f 2f", "in_uv", "in_part", "in_eye"),
        ], index_buffer=self._ibo, index_element_size=4)

        self._bg_prog = self.ctx.program(vertex_shader=_BG_VS, fragment_shader=_BG_FS)
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], "f4")
        self._bg_vao = self.ctx.vertex_array(self._bg_prog, [(self.ctx.buffer(quad.tobytes()), "2f", "in_pos")])
        self._bg_tex = self.ctx.texture((self.width, self.height), 3)
        self._bg_key = None

        self._masks = self._bake_masks()
        self._skin_textures: OrderedDict[int, moderngl.Texture] = OrderedDict()
        self._identity_key: bytes | None = None
        self._identity_mesh = m.neutral
        self._eye_centres = None

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    # -- texture ------------------------------------------------------------------------
    def _bake_masks(self) -> np.ndarray:
        """(S, S, 3) float32 lips / brows / beard-area masks in the face's UV space, computed from
        where each texel lies on the neutral mesh (a position map baked with GL)."""
        m = self.model
        prog = self.ctx.program(vertex_shader=_BAKE_VS, fragment_shader=_BAKE_FS)
        skin = m.corner_part == PART_SKIN
        tris = m.gl_triangles[skin[m.gl_triangles[:, 0]]]
        data = np.concatenate([m.corner_uv, m.neutral[m.corner_vertex]], axis=1).astype("f4")
        vbo, ibo = self.ctx.buffer(data.tobytes()), self.ctx.buffer(tris.astype("i4").tobytes())
        vao = self.ctx.vertex_array(prog, [(vbo, "2f 3f", "in_uv", "in_pos")], index_buffer=ibo,
                                    index_element_size=4)
        tex = self.ctx.texture((_TEXTURE_SIZE, _TEXTURE_SIZE), 4, dtype="f4")
        fbo = self.ctx.framebuffer(color_attachments=[tex])
        fbo.use()
        fbo.clear(0, 0, 0, 0)
        self.ctx.disable(moderngl.DEPTH_TEST)
        vao.render(moderngl.TRIANGLES)
        pos = np.frombuffer(fbo.read(components=4, dtype="f4"), "f4").reshape(_TEXTURE_SIZE, _TEXTURE_SIZE, 4)
        for obj in (vao, vbo, ibo, fbo, tex, prog):
            obj.release()
        covered, x, y, z = pos[..., 3] > 0, pos[..., 0], pos[..., 1], pos[..., 2]

        lm = m.neutral[m.landmarks68]
        # Masks are drawn in a frontal (x, y) picture of the face, 0.02 cm per pixel, then looked
        # up at each texel's position.
        scale, x0, y0, w, h = 50.0, -8.0, -10.0, 800, 900
        to_px = lambda p: np.round(np.c_[(p[:, 0] - x0) * scale, (p[:, 1] - y0) * scale]).astype(np.int32)  # noqa: E731
        lips = np.zeros((h, w), np.float32)
        cv2.fillPoly(lips, [to_px(lm[48:60])], 1.0)
        lips = cv2.GaussianBlur(lips, (0, 0), 3.0)
        brows = np.zeros((h, w), np.float32)
        for side in (range(17, 22), range(22, 27)):
            pts = lm[list(side)] - np.array([0.0, 0.12, 0.0])
            inner_first = pts if side.start == 22 else pts[::-1]
            for k in range(4):
                thick = int(scale * (0.75 - 0.13 * k))
                a, b = to_px(inner_first[k:k + 1])[0], to_px(inner_first[k + 1:k + 2])[0]
                cv2.line(brows, tuple(int(c) for c in a), tuple(int(c) for c in b), 1.0, thick)
        brows = cv2.GaussianBlur(brows, (0, 0), 6.0)
        beard = np.zeros((h, w), np.float32)
        jaw = np.r_[lm[2:15], lm[[35, 33, 31]]]
        cv2.fillPoly(beard, [to_px(jaw)], 1.0)
        cv2.fillPoly(beard, [to_px(lm[48:60])], 0.0)
        beard = cv2.GaussianBlur(beard, (0, 0), 12.0)

        mx, my = ((x - x0) * scale).astype(np.float32), ((y - y0) * scale).astype(np.float32)
        look = lambda img: cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderValue=0.0)  # noqa: E731
        front = covered & (z > 7.0)
        masks = np.stack([look(lips) * (front & (z > 9.0)), look(brows) * front, look(beard) * front], axis=-1)
        return masks.astype(np.float32)

    def _skin_texture(self, seed: int) -> moderngl.Texture:
        tex = self._skin_textures.get(seed)
        if tex is not None:
            self._skin_textures.move_to_end(seed)
            return tex
        rng = np.random.default_rng(seed)
        s = _TEXTURE_SIZE

        def noise(cells: int) -> np.ndarray:
            return cv2.resize(rng.standard_normal((cells, cells), dtype=np.float32), (s, s),
                              interpolation=cv2.INTER_CUBIC)

        # One full-resolution white noise feeds pores, brow hairs and stubble (fine detail only;
        # the three never overlap much, so sharing it is not visible).
        white = rng.standard_normal((s, s), dtype=np.float32)
        fine = cv2.GaussianBlur(white, (0, 0), 0.7)
        tone = 0.5 + 0.06 * noise(6) + 0.036 * noise(24) + 0.018 * noise(96) - 0.06 * np.maximum(fine, 0)
        lips, brows, beard = self._masks[..., 0], self._masks[..., 1], self._masks[..., 2]
        brows = np.clip(brows * 1.6 - 0.15, 0, 1) * np.clip(0.75 + 0.5 * fine, 0, 1) * rng.uniform(0.75, 0.95)
        lips = np.clip(lips * 1.25, 0, 1) * (0.9 + 0.1 * noise(48))
        stubble = beard * np.clip(white * 0.5 + 0.35, 0, 1)
        rgba = np.empty((s, s, 4), np.uint8)
        for k, channel in enumerate((tone, lips, brows, stubble)):
            rgba[..., k] = np.clip(channel * 255.0, 0, 255)
        if len(self._skin_textures) >= _TEXTURE_CACHE:
            tex = self._skin_textures.popitem(last=False)[1]      # reuse the oldest's storage
        else:
            tex = self.ctx.texture((s, s), 4)
            tex.build_mipmaps()     # allocates the levels once; glGenerateMipmap costs ~20 ms here
            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        level, k = rgba, 0
        tex.write(level.tobytes(), level=0)
        while level.shape[0] > 1:
            level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)
            k += 1
            tex.write(np.ascontiguousarray(level).tobytes(), level=k)
        self._skin_textures[seed] = tex
        return tex

    def _background(self, p: RenderParams) -> None:
        # A caller's image may change in place, so only procedural backgrounds are cached.
        key = None if p.background_image is not None else (p.background, p.background_color, p.seed)
        if key is not None and key == self._bg_key:
            return
        w, h = self.width, self.height
        if p.background_image is not None:
            img = cv2.resize(np.ascontiguousarray(p.background_image[..., :3]), (w, h), interpolation=cv2.INTER_AREA)
        else:
            img = background_image(p.background, p.background_color, w, h, p.seed)
        self._bg_tex.write(np.ascontiguousarray(img, np.uint8).tobytes())
        self._bg_key = key

    # -- geometry -----------------------------------------------------------------------
    def mesh(self, p: RenderParams) -> np.ndarray:
        """(N, 3) cm vertices in head axes: identity + expression, eyeballs turned by the gaze."""
        m = self.model
        key = None if p.identity is None else np.asarray(p.identity, np.float32).tobytes()
        if key != self._identity_key or self._eye_centres is None:
            self._identity_mesh = m.identity_mesh(p.identity)
            self._eye_centres = [_eyeball_centre(self._identity_mesh, r[0]) for r in (_SCLERA_LEFT, _SCLERA_RIGHT)]
            self._identity_key = key
        v = self._identity_mesh
        if p.blendshapes is not None:
            v = v + m.arkit_to_ict_deltas(p.blendshapes)
        else:
            v = v.copy()
        for (lo, hi), centre, gaze in zip((_EYEBALL_LEFT, _EYEBALL_RIGHT), self._eye_centres,
                                          (p.gaze_left, p.gaze_right)):
            if gaze[0] or gaze[1]:
                turn = _matrix(gaze_quaternion(*gaze)).astype(np.float32)
                v[lo:hi] = (v[lo:hi] - centre) @ turn.T + centre
        return v

    def project(self, p: RenderParams, vertices_cm: np.ndarray) -> np.ndarray:
        """(K, 2) pixel positions (x right, y down) of head-axes vertices (cm)."""
        rot = _matrix(p.head_rotation)
        cam = (vertices_cm * _CM) @ rot.T + np.asarray(p.head_position)
        f = self.height / 2.0 / math.tan(math.radians(p.fov_y_deg) / 2.0)
        x = self.width / 2.0 + f * cam[:, 0] / -cam[:, 2]
        y = self.height / 2.0 - f * cam[:, 1] / -cam[:, 2]
        return np.stack([x, y], axis=1).astype(np.float32)

    # -- render -------------------------------------------------------------------------
    def render(self, p: RenderParams) -> RenderResult:
        """Draw one frame; ``image`` is (height, width, 3) uint8 RGB."""
        m = self.model
        v = self.mesh(p)
        normals = _vertex_normals(v, m.triangles)
        data = np.concatenate([v[m.corner_vertex] * _CM, normals[m.corner_vertex]], axis=1).astype("f4")
        self._dynamic_vbo.write(data.tobytes())

        albedo = p.skin_albedo if p.skin_albedo is not None else _skin_albedo(p.skin_tone)
        albedo_lin = _srgb_to_linear(albedo)
        lip_lin = albedo_lin * np.array([0.85, 0.45, 0.45], np.float32)
        prog = self._mesh_prog
        prog["u_rot"].write(_matrix(p.head_rotation).T.astype("f4").tobytes())
        prog["u_trans"].value = tuple(float(c) for c in p.head_position)
        prog["u_proj"].write(perspective(p.fov_y_deg, self.width / self.height).T.tobytes())
        prog["u_skin_albedo"].value = tuple(albedo_lin)
        prog["u_lip_albedo"].value = tuple(lip_lin)
        prog["u_hair_albedo"].value = tuple(_srgb_to_linear(p.hair_color))
        prog["u_iris_albedo"].value = tuple(_srgb_to_linear(p.iris_color))
        prog["u_stubble"].value = float(p.stubble)
        prog["u_light_dir"].value = tuple(float(c) for c in p.light_direction)
        prog["u_light"].value = float(p.light_intensity)
        prog["u_ambient"].value = float(p.ambient)
        prog["u_specular"].value = float(p.specular)
        prog["u_iris_radius"].value = _IRIS_RADIUS_CM

        self._background(p)
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self._bg_tex.use(0)
        self._bg_vao.render(moderngl.TRIANGLE_STRIP)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self._skin_texture(p.seed).use(0)
        prog["u_skin"].value = 0
        self.ctx.enable(moderngl.CULL_FACE)
        self._mesh_vao.render(moderngl.TRIANGLES, vertices=self._n_solid)
        self.ctx.disable(moderngl.CULL_FACE)
        self._mesh_vao.render(moderngl.TRIANGLES, vertices=self._n_lash, first=self._n_solid)
        w, h = self._size
        img = np.frombuffer(self._fbo.read(components=3), np.uint8).reshape(h, w, 3)[::-1]
        if self._ss > 1:
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)

        bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32) if p.blendshapes is None else \
            np.asarray(p.blendshapes, np.float32).copy()
        return RenderResult(
            image=np.ascontiguousarray(img),
            blendshapes=bs,
            head_rotation=tuple(float(c) for c in np.asarray(p.head_rotation) / np.linalg.norm(p.head_rotation)),
            head_position=tuple(float(c) for c in p.head_position),
            gaze_left=tuple(float(c) for c in p.gaze_left),
            gaze_right=tuple(float(c) for c in p.gaze_right),
            landmarks68=self.project(p, v[m.landmarks68]),
        )


def _skin_albedo(tone: float) -> np.ndarray:
    t = float(np.clip(tone, 0.0, 1.0)) * (len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    return _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[i + 1] * (t - i)


def background_image(kind: str, color, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 RGB procedural background: ``solid``, ``gradient`` (vertical, from
    ``color`` to a darker, hue-shifted copy) or ``clutter`` (blurred shapes over noise)."""
    rng = np.random.default_rng(seed + 7919)
    c = np.asarray(color, np.float32)
    if kind == "solid":
        img = np.broadcast_to(c, (height, width, 3)).copy()
    elif kind == "gradient":
        other = np.clip(c * rng.uniform(0.3, 0.8) + rng.uniform(-0.15, 0.15, 3), 0, 1)
        t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(c * (1 - t) + other * t, (height, width, 3)).copy()
    elif kind == "clutter":
        img = np.broadcast_to(c, (height, width, 3)).copy()
        for _ in range(int(rng.integers(8, 25))):
            col = tuple(float(x) for x in rng.uniform(0, 1, 3))
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            if rng.random() < 0.5:
                w, h = int(rng.integers(width // 10, width // 2)), int(rng.integers(height // 10, height // 2))
                cv2.rectangle(img, (x, y), (x + w, y + h), col, -1)
            else:
                cv2.circle(img, (x, y), int(rng.integers(width // 20, width // 5)), col, -1)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3.0))
        img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown background {kind!r}; use 'solid', 'gradient' or 'clutter', "
                         "or pass background_image")
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
