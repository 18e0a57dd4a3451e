"""``Renderer``: one headless GL context (moderngl on EGL) that draws ``RenderParams`` into an RGB
image with its ground truth (``RenderResult``)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import moderngl
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.conventions import gaze_quaternion, quat_to_matrix
from training.render.assets import (_CM, _EYEBALL_LEFT, _EYEBALL_RIGHT, _IRIS_RADIUS_CM, _SCLERA_LEFT, _SCLERA_RIGHT,
                                    PART_LASHES, PART_SKIN, FaceModel, _eyeball_centre, _skin_albedo,
                                    _vertex_normals)
from training.render.backgrounds import background_image
from training.render.scene import RenderParams
from training.render.shaders import _BAKE_FS, _BAKE_VS, _BG_FS, _BG_VS, _MESH_FS, _MESH_VS

def _matrix(q) -> np.ndarray:
    return np.array(quat_to_matrix(q), np.float64)

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


def perspective(fov_y_deg: float, aspect: float, near: float = 0.02, far: float = 20.0) -> np.ndarray:
    """OpenGL projection matrix (row-major, for column vectors)."""
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    return np.array([
        [f / aspect, 0, 0, 0], [0, f, 0, 0],
        [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0],
    ], np.float32)


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
