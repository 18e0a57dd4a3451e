"""Headset mode on held-out ICT-FaceKit renders with painted headsets, side by side with it off.

    .venv/bin/python benchmarks/bench_headset.py [--frames 200]

Frames are independent random faces (a seed the training never used), so the face mesh runs in
static-image mode and nothing is carried between frames (no held box, no smoothing). Printed per
set and mode: frames found (a face state with face_present), lower-face mean r (Pearson over the
jaw*/mouth*/cheek*/noseSneer* shapes that move in the set, frames found only), jawOpen r, and how
many found frames sent eyes/brows as tracked. Sets: "visor" (webcam or from below, every frame
occluded; headset mode also gets a rough user ROI for when the mesh fails: the lower-face box
jittered as a user would draw it), "no visor" (the same faces without the headset, mesh only),
"mouth camera" (close-ups from below; the frame is the mouth camera's whole image).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_bridge.estimators.lower_face import LowerFaceEstimator  # noqa: E402
from avatar_bridge.regions import REGION_SHAPES  # noqa: E402
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX  # noqa: E402
from avatar_bridge.runtime.pipeline import PipelineConfig, build_estimator  # noqa: E402
from avatar_bridge.tracking.headset import HeadsetTracker, HeadsetTrackerConfig  # noqa: E402
from avatar_bridge.tracking.lower_face import crop_box  # noqa: E402
from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig  # noqa: E402
from avatar_bridge.types import Frame  # noqa: E402
from training.headset_data import LOWER_INDEX, jittered_box, paint_headset, render_samples  # noqa: E402
from training.metrics import pearson  # noqa: E402

UPPER = [INDEX[n] for r in ("eyes", "brows") for n in REGION_SHAPES[r]]
STATIC = TrackerConfig(static_image_mode=True)


def held_out(n: int, seed: int, views: tuple[str, ...], size: int = 256):
    """(occluded frame, clean frame, truth, rough user ROI) per rendered face."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for s in render_samples(n, seed, size=size, occlude_p=0.0, views=views, view_p=(0.7, 0.3, 1.0)):
        visor = paint_headset(s.image, s.landmarks68, rng)
        out.append((visor, s.image, s.blendshapes, jittered_box(s.landmarks68, s.view, rng)))
    return out


def score(states, truth: np.ndarray) -> dict[str, float]:
    found = np.array([s.face_present for s in states])
    pred = np.stack([s.blendshapes for s in states])[found]
    true = truth[found]
    rs = [pearson(pred[:, i], true[:, i]) for i in LOWER_INDEX if true[:, i].std() > 0.05]
    upper_sent = sum(1 for s in states if s.face_present and not {"eyes", "brows"} <= s.untracked)
    return {"found": found.mean(), "mean_r": float(np.mean(rs)) if rs else float("nan"),
            "jaw_r": pearson(pred[:, INDEX["jawOpen"]], true[:, INDEX["jawOpen"]]),
            "upper_tracked": upper_sent / max(1, found.sum()),
            "per_shape": {ARKIT_BLENDSHAPES[i]: pearson(pred[:, i], true[:, i]) for i in LOWER_INDEX
                          if true[:, i].std() > 0.05}}


def run_off(images, estimator_name: str):
    from avatar_bridge.types import FaceState
    est = build_estimator(PipelineConfig(estimator=estimator_name))
    states = []
    with FaceTracker(STATIC) as tracker:
        for i, img in enumerate(images):
            obs = tracker.track(Frame(img, i, i / 30, "bench"))
            est.reset()
            states.append(est.estimate(obs) if obs is not None else FaceState.neutral())
    return states, est.name


def run_on(images, rois=None, mouth_camera=False, points_only=False, **config):
    """Headset mode's tracker and LowerFaceEstimator(LowerFaceConfig(**config)); ``points_only``: every
    lower-face shape from the point network's readout instead (what renders alone would choose)."""
    from avatar_bridge.estimators.lower_face import LowerFaceConfig
    from avatar_bridge.types import FaceState
    est = LowerFaceEstimator(LowerFaceConfig(**config))
    states, sources = [], []
    cfg = HeadsetTrackerConfig(mouth_camera=mouth_camera, hold_frames=0, tracker=STATIC)
    with HeadsetTracker(cfg) as tracker:
        for i, img in enumerate(images):
            tracker.set_roi(rois[i].as_tuple() if rois is not None else None)
            obs = tracker.track(Frame(img, i, i / 30, "bench"))
            sources.append(obs.source if obs is not None else "none")
            state = est.estimate(obs) if obs is not None else FaceState.neutral()
            if obs is not None and points_only:
                state = replace(state, blendshapes=est.point_shapes(obs))
            states.append(state)
    return states, sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--estimator", default="auto", help="what headset mode off runs (auto, neural, geometry, landmarks)")
    ap.add_argument("--seed", type=int, default=1616)
    ap.add_argument("--per-shape", action="store_true", help="also print each lower-face shape's r per row")
    ap.add_argument("--model", help="the lower-face .onnx headset mode runs (default: the shipped one)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    webcam = held_out(a.frames, a.seed, ("webcam", "below"))
    mouth = held_out(max(a.frames // 2, 20), a.seed + 1, ("mouthcam",))
    print(f"rendered {len(webcam)} + {len(mouth)} held-out faces in {time.perf_counter() - t0:.0f} s")
    truth = np.stack([w[2] for w in webcam])
    visor, clean, rois = [w[0] for w in webcam], [w[1] for w in webcam], [w[3] for w in webcam]
    # A mouth camera's whole image: the lower face from below, 4:3.
    mouth_frames = [cv2.resize(crop_box(m[0], m[3], 240), (320, 240)) for m in mouth]
    mouth_truth = np.stack([m[2] for m in mouth])

    rows = []
    off_visor, name = run_off(visor, a.estimator)
    rows.append(("visor", f"off ({name})", score(off_visor, truth), ""))
    on_visor, src = run_on(visor, rois, model_path=a.model)
    rows.append(("visor", "on (mesh, else ROI)", score(on_visor, truth),
                 f"mesh {src.count('face')}, roi {src.count('roi')}"))
    rows.append(("visor", "on, no point network", score(run_on(visor, rois, model_path=a.model, points_model="")[0], truth),
                 "v0.2: the mesh estimator, else the crop network, for every shape"))
    rows.append(("visor", "on, points everywhere", score(run_on(visor, rois, points_only=True, model_path=a.model)[0], truth),
                 "every shape from the point network (renders' choice)"))
    on_visor_crop, src = run_on(visor, rois, mesh_estimator="", mesh_readout="", points_model="", model_path=a.model)
    rows.append(("visor", "on, crop network only", score(on_visor_crop, truth), "no landmarks estimator, no points"))
    on_visor_mesh, src = run_on(visor, model_path=a.model)
    rows.append(("visor", "on (mesh only)", score(on_visor_mesh, truth), f"mesh {src.count('face')}"))
    off_clean, _ = run_off(clean, a.estimator)
    rows.append(("no visor", f"off ({name})", score(off_clean, truth), ""))
    on_clean, src = run_on(clean, model_path=a.model)
    rows.append(("no visor", "on (mesh only)", score(on_clean, truth), f"mesh {src.count('face')}"))
    off_mouth, _ = run_off(mouth_frames, a.estimator)
    rows.append(("mouth camera", f"off ({name})", score(off_mouth, mouth_truth), ""))
    on_mouth, _ = run_on(mouth_frames, mouth_camera=True, model_path=a.model)
    rows.append(("mouth camera", "on (--mouth-camera)", score(on_mouth, mouth_truth), ""))

    print(f"\n{'set':<13} {'headset mode':<22} {'found':>6} {'lower r':>8} {'jawOpen r':>10} {'eyes/brows sent as tracked':>27}  notes")
    for set_name, mode, s, note in rows:
        print(f"{set_name:<13} {mode:<22} {s['found']:>6.1%} {s['mean_r']:>8.3f} {s['jaw_r']:>10.3f} "
              f"{s['upper_tracked']:>27.0%}  {note}")
    if a.per_shape:
        shapes = sorted({n for _, _, s, _ in rows for n in s["per_shape"]}, key=ARKIT_BLENDSHAPES.index)
        print(f"\nper-shape r (rows as above, in order){'':<3}" + " ".join(f"{k + 1:>6}" for k in range(len(rows))))
        for n in shapes:
            print(f"{n:<40}" + " ".join(f"{s['per_shape'].get(n, float('nan')):>6.2f}" for _, _, s, _ in rows))
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
