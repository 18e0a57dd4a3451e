"""The ICT-FaceKit face as the renderer draws it: the packed archive's location, its part and vertex
ranges, the skin tones, and ``FaceModel`` (mesh, triangulation, identity and expression shapes in
ARKit order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX

# The shared data folder sits beside the checkout (/work/shared next to /work/main).
DEFAULT_ICT_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"

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


def _skin_albedo(tone: float) -> np.ndarray:
    t = float(np.clip(tone, 0.0, 1.0)) * (len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    return _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[i + 1] * (t - i)
