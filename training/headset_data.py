"""Synthetic data for headset mode: ICT-FaceKit renders with a headset-like occluder over the upper
face, seen by a webcam, from below, or by a mouth camera, and the lower-face crops the network reads.

The occluder is painted over the finished render: a headset sits in front of the face, so nothing of
the face can show through it, and a 2D painter gives the variety that matters (shape, colour,
shading, how low it sits on the nose, a nose gap, straps, the shadow under it) without modelling one.

    python -m training.headset_data --frames 20000 --out /tmp/headset_frames.npz

That writes whole frames (image, truth, the 68 projected points, the user-like box and the face mesh's
box where MediaPipe fits one), so training can cut new crops every epoch (``cut_crop``); ``build_crops``
cuts a fixed set of crops from a few frames instead (the tests' smoke runs).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from avatar_bridge.tracking.lower_face import (CROP_SIZE, LOWER_POINTS, LOWER_POINTS_FLIP, Box, box_from_landmarks, box_from_points,
                                               crop_box)

# What the lower-face network predicts: everything from the nose base down. tongueOut has no shape
# in ICT-FaceKit, so no render can teach it; it stays out.
LOWER_FACE_SHAPES: tuple[str, ...] = tuple(
    n for n in ARKIT_BLENDSHAPES if n.startswith(("jaw", "mouth", "cheek", "noseSneer")))
LOWER_INDEX = np.array([INDEX[n] for n in LOWER_FACE_SHAPES])

VIEWS = ("webcam", "below", "mouthcam")
# The Multi-PIE points the point network places in its crop (training/train_lower_points.py): the jaw
# line, the nose base and the 20 lip points; column j of a mirrored crop's is column KEYPOINT_FLIP[j]
# of the original (its x is 1 - x).
KEYPOINTS, KEYPOINT_FLIP = LOWER_POINTS, LOWER_POINTS_FLIP
# Pairs a mirrored crop swaps (the tests hold the label flip to them).
FLIP_CHECK_PAIRS = (("mouthSmileLeft", "mouthSmileRight"), ("mouthLeft", "mouthRight"), ("jawLeft", "jawRight"),
                    ("jawOpen", "jawOpen"), ("cheekPuff", "cheekPuff"))


@dataclass(frozen=True)
class Sample:
    """One rendered, occluded frame: ``image`` full frame, ``box`` the crop a tracker or user would
    use, ``blendshapes`` (52,) truth, ``occluded`` whether a headset was painted on."""

    image: np.ndarray
    box: Box
    blendshapes: np.ndarray
    view: str
    occluded: bool
    landmarks68: np.ndarray


# MediaPipe face-mesh index nearest to each Multi-PIE 68 point, so a real face tracked by our tracker
# can be given a visor by paint_headset (training/evaluate_real.py --headset). Measured: 80 ICT-FaceKit
# webcam renders (seed 68, 384 px) tracked in static-image mode, the mesh point with the least mean
# distance to each true point; mean error 1.4-6.5 % of the face width (the jaw contour the most).
MP_TO_68 = np.array([
    127, 234, 93, 215, 172, 150, 149, 148, 152, 377, 378, 379, 397, 435, 401, 454, 356,   # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,                                        # brows 17-26
    168, 197, 195, 4, 240, 97, 2, 326, 460,                                               # nose 27-35
    33, 160, 158, 155, 153, 163, 362, 385, 387, 249, 373, 380,                            # eyes 36-47
    61, 39, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 78, 81, 13, 311, 308, 402, 14, 178])  # lips 48-67


def landmarks68_from_mesh(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised (478, 3) landmarks -> (68, 2) pixels in the Multi-PIE layout (MP_TO_68)."""
    return (np.asarray(landmarks[MP_TO_68, :2], np.float64) * (width, height)).astype(np.float32)


def lower_face_weights(rng: np.random.Generator) -> np.ndarray:
    """Expressions that exercise the lower face: jawOpen often, a few mouth/cheek shapes, any eyes."""
    bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
    if rng.random() < 0.65:
        bs[INDEX["jawOpen"]] = rng.uniform(0.0, 1.0)
    lower = rng.choice(LOWER_INDEX, size=rng.integers(0, 5), replace=False)
    bs[lower] = np.maximum(bs[lower], rng.uniform(0.0, 1.0, len(lower)) ** 1.3)
    if bs[INDEX["mouthClose"]] > bs[INDEX["jawOpen"]]:     # mouthClose only means something on an open jaw
        bs[INDEX["mouthClose"]] = bs[INDEX["jawOpen"]] * rng.uniform(0, 1)
    upper = rng.choice([i for i in range(52) if i not in set(LOWER_INDEX)], size=rng.integers(0, 4), replace=False)
    bs[upper] = rng.uniform(0, 1, len(upper))
    return bs


def sample_params(rng: np.random.Generator, view: str):
    from training.render import random_params

    p = random_params(rng, max_yaw_deg=25.0, max_pitch_deg=12.0, max_roll_deg=10.0, fill=(0.45, 0.7))
    bs = lower_face_weights(rng)
    yaw, pitch, roll = (float(a) for a in np.radians(rng.uniform(-1, 1, 3) * [25.0, 10.0, 10.0]))
    x, y, z = p.head_position
    if view in ("below", "mouthcam"):
        # A camera below the chin looking up sees the head pitched back (ARKit pitch < 0 = chin up).
        pitch = -math.radians(rng.uniform(15.0, 40.0))
        y += rng.uniform(0.0, 0.04)
    if view == "mouthcam":
        z *= rng.uniform(0.45, 0.7)          # close up: the lower face fills the frame
        yaw *= 0.4
    return replace(p, blendshapes=bs, head_rotation=from_yaw_pitch_roll(yaw, pitch, roll), head_position=(x, y, z))


def paint_headset(image: np.ndarray, l68: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A headset-like occluder over the eyes and brows, reaching down the nose by a random amount."""
    img = image.copy()
    h, w = img.shape[:2]
    face_w = float(np.linalg.norm(l68[16] - l68[0]))
    # How low it sits: from the nose bridge (27) to just above the nose base (33).
    fit = rng.uniform(0.0, 1.0)
    bottom = l68[28] * (1 - fit) + l68[32] * fit
    top_y = float(l68[17:27, 1].min() - rng.uniform(0.3, 0.7) * face_w)
    left = float(l68[:, 0].min() - rng.uniform(0.05, 0.3) * face_w)
    right = float(l68[:, 0].max() + rng.uniform(0.05, 0.3) * face_w)
    by = float(bottom[1])
    tilt = rng.uniform(-0.08, 0.08) * face_w      # a headset worn a little crooked
    shape = rng.choice(["box", "rounded", "goggle"])
    if shape == "box":
        pts = [(left, top_y), (right, top_y), (right, by + tilt), (left, by - tilt)]
    elif shape == "rounded":
        pts = [(left, top_y), (right, top_y)]
        for t in np.linspace(0, 1, 12):            # a rounded lower edge
            x = right + (left - right) * t
            pts.append((x, by + (tilt * (1 - 2 * t)) - 0.12 * face_w * (1 - math.sin(math.pi * t))))
    else:                                          # goggle: a lower edge that rises over the nose
        pts = [(left, top_y), (right, top_y), (right, by + tilt)]
        cx = float(bottom[0])
        gap_w, gap_h = rng.uniform(0.12, 0.25) * face_w, rng.uniform(0.05, 0.2) * face_w
        pts += [(cx + gap_w, by), (cx, by - gap_h), (cx - gap_w, by), (left, by - tilt)]
    poly = np.array(pts, np.float32)
    # The visor's surface: a base colour (white, grey, black or any), a vertical gradient, noise.
    base = rng.choice([[235, 235, 235], [40, 40, 45], [120, 120, 125], list(rng.integers(0, 255, 3))])
    base = np.asarray(base, np.float32) * rng.uniform(0.7, 1.1)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    surface = base + yy * rng.uniform(-40, 40) + rng.normal(0, rng.uniform(1, 8), (h, w, 1)).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    if rng.random() < 0.5:                          # straps over the sides of the head
        sy = int(top_y + rng.uniform(0.3, 0.8) * (by - top_y))
        cv2.line(mask, (0, sy), (w, sy + int(rng.uniform(-0.1, 0.1) * face_w)), 255,
                 max(1, int(rng.uniform(0.04, 0.1) * face_w)))
    # The shadow the headset casts on the cheeks below it.
    shadow = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * face_w)).astype(np.float32) / 255
    shadow = np.roll(shadow, int(rng.uniform(0.02, 0.08) * face_w), axis=0)
    img = img.astype(np.float32) * (1 - rng.uniform(0.2, 0.6) * shadow[..., None])
    a = mask.astype(np.float32)[..., None] / 255
    img = img * (1 - a) + np.clip(surface, 0, 255) * a
    return np.clip(img, 0, 255).astype(np.uint8)


def jittered_box(l68: np.ndarray, view: str, rng: np.random.Generator) -> Box:
    """The crop a tracker (or a user's rough ROI, or a mouth camera's whole frame) would give."""
    box = box_from_points(l68[2], l68[14], l68[33])
    if view == "mouthcam":
        mouth = l68[48:68].mean(0)
        side = box.w * rng.uniform(0.75, 1.0)
        box = Box(mouth[0] - side / 2, mouth[1] - side / 2, side, side)
    scale = rng.uniform(0.88, 1.2)
    aspect = rng.uniform(0.8, 1.25) if view != "mouthcam" else rng.choice([4 / 3, 16 / 9, 1.0]) * rng.uniform(0.9, 1.1)
    bw = box.w * scale * math.sqrt(aspect)
    bh = box.h * scale / math.sqrt(aspect)
    cx = box.x + box.w / 2 + rng.uniform(-0.1, 0.1) * box.w
    cy = box.y + box.h / 2 + rng.uniform(-0.1, 0.1) * box.h
    return Box(cx - bw / 2, cy - bh / 2, bw, bh)


def render_samples(n: int, seed: int, size: int = 192, occlude_p: float = 0.85,
                   views: tuple[str, ...] = VIEWS, view_p: tuple[float, ...] = (0.6, 0.2, 0.2)):
    """Yield ``n`` Samples (rendering needs the ICT-FaceKit data and EGL)."""
    from training.render import Renderer

    rng = np.random.default_rng(seed)
    with Renderer(size, size) as renderer:
        for _ in range(n):
            view = str(rng.choice(views, p=np.asarray(view_p[:len(views)]) / sum(view_p[:len(views)])))
            res = renderer.render(sample_params(rng, view))
            occluded = bool(rng.random() < occlude_p)
            image = paint_headset(res.image, res.landmarks68, rng) if occluded else res.image
            yield Sample(image, jittered_box(res.landmarks68, view, rng), res.blendshapes, view, occluded,
                         res.landmarks68)


def photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera differences the renders lack: gain, colour cast, blur, noise, JPEG-like softness."""
    x = crop.astype(np.float32) * rng.uniform(0.7, 1.3) * rng.uniform(0.9, 1.1, 3) + rng.uniform(-20, 20)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.2))
    x = x + rng.normal(0, rng.uniform(0, 6), x.shape)
    if rng.random() < 0.2:
        x = np.repeat(x.mean(2, keepdims=True), 3, axis=2)   # IR / monochrome mouth cameras
    return np.clip(x, 0, 255).astype(np.uint8)


def crop_keypoints(l68: np.ndarray, box: Box) -> np.ndarray:
    """The ``KEYPOINTS`` in the crop cut from ``box``: (K, 2), 0..1 across the crop (may fall outside)."""
    return ((l68[KEYPOINTS] - (box.x, box.y)) / (box.w, box.h)).astype(np.float32)


def jitter_small(box: Box, rng: np.random.Generator) -> Box:
    """The face mesh's box moved a little: its own frame-to-frame wobble, so crops are not all alike."""
    side = box.w * rng.uniform(0.95, 1.05)
    cx = box.x + box.w / 2 + rng.uniform(-0.03, 0.03) * box.w
    cy = box.y + box.h / 2 + rng.uniform(-0.03, 0.03) * box.h
    return Box(cx - side / 2, cy - side / 2, side, side)


MESH_BOX_P = 0.6    # where the mesh fitted, this share of crops is cut from its box (what run time uses)


def cut_crop(image: np.ndarray, l68: np.ndarray, view: str, mesh_box: Box | None, rng: np.random.Generator,
             first: Box | None = None) -> tuple[np.ndarray, np.ndarray, Box]:
    """One training crop, its keypoints and its box: from the face mesh's box (as headset mode places it when
    MediaPipe fits) or a jittered true box (a held box, a user's ROI, a mouth camera); ``first``
    forces the box."""
    if first is not None:
        box = first
    elif mesh_box is not None and rng.random() < MESH_BOX_P:
        box = jitter_small(mesh_box, rng)
    else:
        box = jittered_box(l68, view, rng)
    return photometric(crop_box(image, box, CROP_SIZE), rng), crop_keypoints(l68, box), box


def fit_meshes(images: np.ndarray, views: np.ndarray, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's face mesh as headset mode fits it (MediaPipe, static image mode, as
    bench_headset.py runs it): (N, 478, 3) normalised landmarks and (N, 4) the box cut from them;
    NaN where it fits no face or the view is a mouth camera's."""
    from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
    from avatar_bridge.types import Frame

    boxes = np.full((len(images), 4), np.nan, np.float32)
    meshes = np.full((len(images), 478, 3), np.nan, np.float32)
    cfg = TrackerConfig(static_image_mode=True, min_detection_confidence=0.3, min_tracking_confidence=0.3)
    with FaceTracker(cfg) as tracker:
        for i, img in enumerate(images):
            if VIEWS[int(views[i])] == "mouthcam":
                continue
            face = tracker.track(Frame(img, i, i / 30, "train"))
            if face is not None:
                meshes[i] = face.landmarks[:, :3]
                boxes[i] = box_from_landmarks(face.landmarks, img.shape[1], img.shape[0]).as_tuple()
            if progress and (i + 1) % 1000 == 0:
                print(f"mesh {i + 1}/{len(images)}", flush=True)
    return meshes, boxes


def render_frames(n: int, seed: int, progress: bool = True) -> dict[str, np.ndarray]:
    """Render ``n`` whole frames with their truth and the face mesh's box (see the module docstring)."""
    imgs, l68, bs, views, occ, boxes = [], [], [], [], [], []
    started = time.perf_counter()
    for i, s in enumerate(render_samples(n, seed)):
        imgs.append(s.image)
        l68.append(s.landmarks68)
        bs.append(s.blendshapes)
        views.append(VIEWS.index(s.view))
        occ.append(s.occluded)
        boxes.append(s.box.as_tuple())
        if progress and (i + 1) % 500 == 0:
            el = time.perf_counter() - started
            print(f"{i + 1}/{n} frames, {el:.0f} s, ETA {el / (i + 1) * (n - i - 1):.0f} s", flush=True)
    data = {"images": np.stack(imgs), "l68": np.stack(l68).astype(np.float32),
            "blendshapes": np.stack(bs).astype(np.float32), "views": np.array(views, np.int8),
            "occluded": np.array(occ), "boxes": np.array(boxes, np.float32)}
    data["meshes"], data["mesh_boxes"] = fit_meshes(data["images"], data["views"], progress)
    return data


def build_crops(n: int, seed: int, crops_per_frame: int = 2, progress: bool = True) -> dict[str, np.ndarray]:
    """Render ``n`` frames and cut ``crops_per_frame`` crops from each: the first from the frame's
    user-like box, the rest as ``cut_crop`` does (no face mesh: a fixed set for quick runs)."""
    rng = np.random.default_rng(seed + 1)
    xs, ys, kps, views = [], [], [], []
    for s in render_samples(n, seed):
        for k in range(crops_per_frame):
            crop, kp, _ = cut_crop(s.image, s.landmarks68, s.view, None, rng, first=s.box if k == 0 else None)
            xs.append(crop)
            kps.append(kp)
            ys.append(s.blendshapes[LOWER_INDEX])
            views.append(VIEWS.index(s.view))
    return {"crops": np.stack(xs), "targets": np.stack(ys).astype(np.float32), "keypoints": np.stack(kps),
            "views": np.array(views, np.int8), "shapes": np.array(LOWER_FACE_SHAPES),
            "crops_per_frame": np.array(crops_per_frame)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True, help="the .npz of whole frames to write")
    a = ap.parse_args(argv)
    data = render_frames(a.frames, a.seed)
    np.savez(a.out, **data)
    print(f"wrote {a.out}: {len(data['images'])} frames, face mesh on {np.isfinite(data['mesh_boxes'][:, 0]).sum()}")


if __name__ == "__main__":
    main()
