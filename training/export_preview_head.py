"""Export the preview page's 3D head: ICT-FaceKit's generic face, decimated, with its expression
shapes as the 52 ARKit morph targets and the eyeballs as nodes the page turns for gaze, to one GLB
(``avatar_bridge/assets/preview_head.glb``, MIT like its source; see assets/LICENSE-demo.txt).

    python -m training.export_preview_head [--ict PATH] [--out PATH] [--keep 0.3]

Run once; the asset is committed. Each part is decimated with fast-simplification (quadric edge
collapses) and every expression shape is the *same* collapses replayed on the shape's mesh, so a
decimated vertex moves exactly as the surface it stands for (no nearest-vertex guessing across the
lips). Morph targets are sparse accessors: only the vertices a shape moves are stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fast_simplification
import numpy as np
import pygltflib as gl

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from training.render import DEFAULT_ICT_PATH

OUT = Path(__file__).resolve().parents[1] / "avatar_bridge" / "assets" / "preview_head.glb"

# Vertex ranges from the ICT-FaceKit README, each part with a colour (no textures ship with it)
# and the share of its vertices kept. The lashes, lacrimal fluid and eye blend/occlusion layers
# are thin transparent cards that need texturing to look right; they are left out.
PARTS = {  # name: (first vertex, end vertex, RGBA, roughness, keep factor)
    "skin": (0, 11248, (0.80, 0.60, 0.50, 1.0), 0.65, 1.0),
    "mouth": (11248, 13294, (0.30, 0.08, 0.08, 1.0), 0.9, 0.4),
    "gums": (14062, 17039, (0.72, 0.32, 0.34, 1.0), 0.6, 0.4),
    "teeth": (17039, 21451, (0.95, 0.93, 0.86, 1.0), 0.35, 0.3),
}
EYES = {"eyeLeft": (21451, 23021, 22221), "eyeRight": (23021, 24591, 23791)}  # start, end, iris start
SCLERA, IRIS = ((0.93, 0.92, 0.90, 1.0), 0.3), ((0.20, 0.24, 0.30, 1.0), 0.2)
CM = 0.01                       # ICT is in centimetres; glTF in metres
MOVES_M = 2e-5                  # a morph target stores a vertex that moves more than 0.02 mm


def triangles_in(faces: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Triangles (quads split) of the polygons whose vertices all lie in [lo, hi)."""
    corners = np.where(faces >= 0, faces, faces[:, :1])
    faces = faces[((corners >= lo) & (corners < hi)).all(axis=1)]
    quad = faces[:, 3] >= 0
    return np.concatenate([faces[:, :3], faces[quad][:, [0, 2, 3]]]).astype(np.int64)


def arkit_deltas(d: np.lib.npyio.NpzFile) -> np.ndarray:
    """(52, N, 3) cm: each ARKit shape's ICT delta (browInnerUp and cheekPuff are ICT's two halves
    together, as in training/render/; tongueOut has no ICT shape and stays zero)."""
    deltas = np.zeros((len(ARKIT_BLENDSHAPES), *d["neutral"].shape), np.float32)
    for name, delta in zip(d["expression_names"], d["expression_deltas"]):
        name = str(name)
        base = name[:-2] if name.endswith(("_L", "_R")) else name
        arkit = base + {"_L": "Left", "_R": "Right"}.get(name[-2:], "")
        deltas[INDEX[arkit] if arkit in INDEX else INDEX[base]] += delta
    return deltas


def decimate(points: np.ndarray, tris: np.ndarray, keep: float, shapes: np.ndarray):
    """(points, triangles, shape deltas) of the part decimated to ``keep`` of its triangles."""
    used = np.unique(tris)
    remap = np.full(len(points), -1)
    remap[used] = np.arange(len(used))
    p, t, s = points[used].astype(np.float64), remap[tris], shapes[:, used]
    if keep >= 1.0:
        return p, t, s
    _, _, collapses = fast_simplification.simplify(p, t, target_reduction=1.0 - keep, return_collapses=True)
    base, tri, _ = fast_simplification.replay_simplification(p, t, collapses)
    moved = [fast_simplification.replay_simplification(p + ds, t, collapses)[0] - base for ds in s]
    return base, tri, np.array(moved).reshape(len(s), *base.shape)


def normals(v: np.ndarray, tris: np.ndarray) -> np.ndarray:
    fn = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, tris[:, k], fn)
    return (n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


class GlbWriter:
    """Accumulates the binary buffer, buffer views and accessors of one GLB."""

    def __init__(self) -> None:
        self.gltf = gl.GLTF2(asset=gl.Asset(generator="avatar-bridge training/export_preview_head.py"))
        self.blob = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data),
                                                   target=target))
        self.blob += data
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        comp = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint16): gl.UNSIGNED_SHORT,
                np.dtype(np.uint32): gl.UNSIGNED_INT}[array.dtype]
        acc = gl.Accessor(bufferView=self.view(array.tobytes(), target), componentType=comp,
                          count=len(array) if kind != "SCALAR" else array.size, type=kind)
        if bounds:
            acc.min, acc.max = array.min(axis=0).tolist(), array.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def sparse_target(self, delta: np.ndarray) -> int:
        """A morph target storing only the vertices that move (at least one, as glTF requires)."""
        idx = np.flatnonzero(np.abs(delta).max(axis=1) > MOVES_M)
        idx = idx if len(idx) else np.array([0])
        values = delta[idx].astype(np.float32)
        full = np.zeros_like(delta, dtype=np.float32)
        full[idx] = values
        sparse = gl.Sparse(count=len(idx),
                           indices=gl.AccessorSparseIndices(bufferView=self.view(idx.astype(np.uint32).tobytes()),
                                                          componentType=gl.UNSIGNED_INT),
                           values=gl.AccessorSparseValues(bufferView=self.view(values.tobytes())))
        self.gltf.accessors.append(gl.Accessor(componentType=gl.FLOAT, count=len(delta), type="VEC3", sparse=sparse,
                                               min=full.min(axis=0).tolist(), max=full.max(axis=0).tolist()))
        return len(self.gltf.accessors) - 1

    def material(self, name: str, rgba, roughness: float) -> int:
        self.gltf.materials.append(gl.Material(name=name, pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorFactor=list(rgba), metallicFactor=0.0, roughnessFactor=roughness)))
        return len(self.gltf.materials) - 1

    def primitive(self, v: np.ndarray, tris: np.ndarray, material: int, targets: list[int] | None = None):
        attrs = gl.Attributes(POSITION=self.accessor(v.astype(np.float32), "VEC3", gl.ARRAY_BUFFER, bounds=True),
                              NORMAL=self.accessor(normals(v, tris), "VEC3", gl.ARRAY_BUFFER))
        index_type = np.uint16 if len(v) < 65536 else np.uint32
        return gl.Primitive(attributes=attrs, material=material, indices=self.accessor(
            tris.astype(index_type).ravel(), "SCALAR", gl.ELEMENT_ARRAY_BUFFER),
            targets=[{"POSITION": t} for t in targets] if targets else None)

    def save(self, path: Path) -> None:
        self.gltf.buffers.append(gl.Buffer(byteLength=len(self.blob)))
        self.gltf.set_binary_blob(bytes(self.blob))
        self.gltf.save_binary(str(path))


def eyeball_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre (the eyeball turns about it)."""
    a = np.c_[2 * points, np.ones(len(points))]
    return np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)[0][:3]


def export(ict: Path, out: Path, keep: float) -> dict:
    d = np.load(ict)
    neutral, faces = d["neutral"].astype(np.float64), d["faces"]
    shapes = arkit_deltas(d).astype(np.float64)
    skin_lo, skin_hi = PARTS["skin"][:2]
    # The page turns the head about this point: the middle of the skull, where a neck would pivot.
    lo, hi = neutral[skin_lo:skin_hi].min(axis=0), neutral[skin_lo:skin_hi].max(axis=0)
    pivot = np.array([0.0, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2])
    w = GlbWriter()
    prims, counts = [], {}
    for name, (a, b, rgba, rough, factor) in PARTS.items():
        v, t, s = decimate(neutral - pivot, triangles_in(faces, a, b), keep * factor, shapes)
        targets = [w.sparse_target(ds * CM) for ds in s]
        prims.append(w.primitive(v * CM, t, w.material(name, rgba, rough), targets))
        counts[name] = len(v)
    w.gltf.meshes.append(gl.Mesh(name="face", primitives=prims, extras={"targetNames": list(ARKIT_BLENDSHAPES)}))
    w.gltf.nodes.append(gl.Node(name="face", mesh=0))
    children = [0]
    sclera_mat, iris_mat = w.material("sclera", *SCLERA), w.material("iris", *IRIS)
    for name, (a, b, iris) in EYES.items():
        centre = eyeball_centre(neutral[a:iris])
        # The sclera mesh has a clear cornea cap over the iris (a glass material in ICT's renders);
        # drawn opaque it would hide the iris, so the cap in front of the iris is dropped.
        local = neutral - centre
        # The iris mesh is a deep cup; its visible disc is the part near the eyeball's front surface.
        front = local[iris:b][local[iris:b, 2] > 0.9 * np.linalg.norm(local[a:iris], axis=1).mean()]
        iris_radius = np.hypot(front[:, 0], front[:, 1]).max()
        cornea = (np.hypot(local[:, 0], local[:, 1]) < iris_radius) & (local[:, 2] > 0)
        sclera = triangles_in(faces, a, iris)
        sclera = sclera[~cornea[sclera].all(axis=1)]
        eye_prims = []
        for tris, mat in ((sclera, sclera_mat), (triangles_in(faces, iris, b), iris_mat)):
            v, t, _ = decimate(local, tris, keep, shapes[:0])
            eye_prims.append(w.primitive(v * CM, t, mat))
            counts[f"{name}.{'sclera' if mat == sclera_mat else 'iris'}"] = len(v)
        w.gltf.meshes.append(gl.Mesh(name=name, primitives=eye_prims))
        w.gltf.nodes.append(gl.Node(name=name, mesh=len(w.gltf.meshes) - 1,
                                    translation=((centre - pivot) * CM).tolist()))
        children.append(len(w.gltf.nodes) - 1)
    w.gltf.nodes.append(gl.Node(name="head", children=children))
    w.gltf.scenes.append(gl.Scene(nodes=[len(w.gltf.nodes) - 1]))
    w.gltf.scene = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    w.save(out)
    return {"vertices": counts, "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ict", type=Path, default=DEFAULT_ICT_PATH, help="ict_facekit.npz (default: shared/data)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"the GLB to write (default: {OUT})")
    ap.add_argument("--keep", type=float, default=0.3, help="share of the skin's triangles kept (default 0.3)")
    args = ap.parse_args()
    report = export(args.ict, args.out, args.keep)
    print(f"wrote {args.out} ({report['bytes'] / 1e6:.2f} MB): vertices {report['vertices']}")


if __name__ == "__main__":
    main()
