"""Jitter and lag of the signal chain on rendered faces through the real tracker and estimator.

The synthetic benchmark (bench_signal_chain.py) chose the filter defaults from assumed noise
levels; this one checks them against what MediaPipe + the estimator actually produce on
ICT-FaceKit renders with camera-like pixel noise, raw (smoothing off) vs filtered (defaults).

    .venv/bin/python benchmarks/bench_signal_chain_rendered.py [--estimator auto|geometry|neural]

jitter: std of each output over a held-still face (150 frames at 30 fps, fresh sensor noise per
        frame). lag: frames after a step in the true value until the output covers 90 % of its
        own step (raw included, so tracker lag shows too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_bridge.conventions import head_yaw_pitch_roll  # noqa: E402
from avatar_bridge.runtime.pipeline import PipelineConfig, build_estimator  # noqa: E402
from avatar_bridge.signal.chain import SignalChain, SignalChainConfig  # noqa: E402
from avatar_bridge.tracking.tracker import FaceTracker  # noqa: E402
from avatar_bridge.types import FaceState, Frame  # noqa: E402
from avatar_bridge.conventions import from_yaw_pitch_roll  # noqa: E402
from training.render import Renderer, default_params  # noqa: E402

FPS = 30.0
BASE = {"jawOpen": 0.1, "mouthSmileLeft": 0.1, "mouthSmileRight": 0.1}
STEP = {"jawOpen": 0.7, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0, "mouthSmileLeft": 0.7, "browInnerUp": 0.8}
SHAPES = ["eyeBlinkLeft", "jawOpen", "mouthSmileLeft", "browInnerUp"]


def render_sequence(renderer: Renderer, frames: list[dict], noise: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for kw in track(frames, description="rendering", transient=True):
        image = renderer.render(default_params(**kw)).image.astype(np.float32)
        image += rng.normal(0.0, noise, image.shape)          # sensor noise, fresh every frame
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def estimate(images: list[np.ndarray], estimator_name: str) -> list[FaceState]:
    tracker, estimator = FaceTracker(), build_estimator(PipelineConfig(estimator=estimator_name))
    states = []
    for i, img in enumerate(images):
        obs = tracker.track(Frame(img, i, i / FPS, "bench"))
        states.append(estimator.estimate(obs) if obs else FaceState.neutral(t_capture=i / FPS, frame_index=i))
    tracker.close()
    return states


def channels(states: list[FaceState]) -> dict[str, np.ndarray]:
    out = {name: np.array([s.blendshape(name) for s in states]) for name in SHAPES}
    out["head yaw (deg)"] = np.degrees([head_yaw_pitch_roll(s.head_rotation)[0] for s in states])
    out["gaze L yaw (deg)"] = np.degrees([s.gaze_left[0] for s in states])
    return out


def filtered(states: list[FaceState], smoothing: bool) -> list[FaceState]:
    chain = SignalChain(SignalChainConfig(smoothing=smoothing, calibration=False))
    return [chain.process(s) for s in states]


def lag_frames(x: np.ndarray, at: int) -> int | None:
    before, after = x[:at].mean(), x[-10:].mean()
    if abs(after - before) < 1e-3:
        return None
    reached = np.flatnonzero((x[at:] - before) / (after - before) >= 0.9)
    return int(reached[0]) if len(reached) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", default="auto")
    ap.add_argument("--noise", type=float, default=4.0, help="sensor noise std, 8-bit levels")
    args = ap.parse_args()

    renderer = Renderer(256, 256)
    still = [dict(blendshapes=BASE)] * 150
    step_at = 30
    steps = [dict(blendshapes=BASE)] * step_at + [dict(blendshapes={**BASE, **STEP})] * 30
    yaw_steps = [dict(blendshapes=BASE)] * step_at + [dict(blendshapes=BASE, head_rotation=from_yaw_pitch_roll(0.35, 0.0, 0.0))] * 30
    runs = {name: estimate(render_sequence(renderer, seq, args.noise, seed), args.estimator)
            for seed, (name, seq) in enumerate((("still", still), ("step", steps), ("yaw", yaw_steps)))}

    print(f"estimator {args.estimator}, sensor noise {args.noise}/255, {FPS:.0f} fps; jitter = std on a still face, "
          f"lag = frames to 90 % of a step")
    print(f"{'channel':18s} | {'jitter raw':>10s} {'filtered':>9s} {'drop':>6s} | {'lag raw':>7s} {'filtered':>8s}")
    raw = {k: channels(filtered(v, False)) for k, v in runs.items()}
    flt = {k: channels(filtered(v, True)) for k, v in runs.items()}
    for ch in raw["still"]:
        j_raw, j_flt = raw["still"][ch][10:].std(), flt["still"][ch][10:].std()
        src = "yaw" if "head" in ch else "step"
        l_raw, l_flt = lag_frames(raw[src][ch], step_at), lag_frames(flt[src][ch], step_at)
        drop = f"{j_raw / j_flt:5.1f}x" if j_flt > 0 else "   -  "
        fmt = lambda v: "   -" if v is None else f"{v:4d}"   # noqa: E731
        print(f"{ch:18s} | {j_raw:10.4f} {j_flt:9.4f} {drop} | {fmt(l_raw):>7s} {fmt(l_flt):>8s}")


if __name__ == "__main__":
    main()
