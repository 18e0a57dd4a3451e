"""Render the built-in demo clip: a synthetic ICT-FaceKit face that blinks, opens the jaw, smiles,
raises the brows, moves the head and looks around, with its per-frame ground truth beside it.

    python -m training.make_demo_clip --out avatar_bridge/assets/demo.mp4

writes ``demo.mp4`` (H.264 through ffmpeg when present, else OpenCV mp4v) and ``demo_truth.npz``
(``blendshapes`` (T, 52) ARKit order, ``head_rotation`` (T, 4) quaternions x, y, z, w,
``head_position`` (T, 3) metres, ``gaze_left``/``gaze_right`` (T, 2) eye-in-head yaw, pitch
radians, ``landmarks68`` (T, 68, 2) pixels, ``t`` (T,) seconds, ``fps``, ``names``).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from training.render import RenderParams, Renderer, framing, gaze_blendshapes


@dataclass(frozen=True)
class DemoClipConfig:
    """What the clip looks like; the defaults make the shipped asset."""

    width: int = 320
    height: int = 240
    fps: int = 30
    seconds: float = 6.0
    fov_y_deg: float = 30.0
    fill: float = 0.5
    seed: int = 7
    crf: int = 20          # H.264 quality; the clip stays far under 1.5 MB


def _bump(t: np.ndarray, start: float, end: float, peak: float = 1.0) -> np.ndarray:
    """0 outside [start, end], a raised-cosine hill of height ``peak`` inside."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return peak * 0.5 * (1.0 - np.cos(2.0 * math.pi * x))


def _blink(t: np.ndarray, start: float) -> np.ndarray:
    """A ~150 ms blink: lids close in 60 ms and reopen in 90 ms."""
    closing = np.clip((t - start) / 0.06, 0.0, 1.0)
    opening = np.clip(1.0 - (t - start - 0.06) / 0.09, 0.0, 1.0)
    return np.where(t < start + 0.06, closing, opening) * (t >= start)


def _saccades(t: np.ndarray, targets: list[tuple[float, float, float]]) -> np.ndarray:
    """(T, 2) gaze (yaw, pitch) jumping to each (time, yaw, pitch) target in a 50 ms saccade."""
    gaze = np.zeros((len(t), 2))
    for when, yaw, pitch in targets:
        x = np.clip((t - when) / 0.05, 0.0, 1.0)[:, None]
        gaze = gaze * (1 - x) + np.array([yaw, pitch]) * x
    return gaze


def clip_timeline(cfg: DemoClipConfig) -> list[RenderParams]:
    """One ``RenderParams`` per frame."""
    t = np.arange(int(round(cfg.seconds * cfg.fps))) / cfg.fps
    bs = np.zeros((len(t), len(ARKIT_BLENDSHAPES)), np.float32)
    blink = sum(_blink(t, s) for s in (0.7, 2.4, 4.1, 5.45))
    bs[:, INDEX["eyeBlinkLeft"]] = bs[:, INDEX["eyeBlinkRight"]] = blink
    bs[:, INDEX["jawOpen"]] = _bump(t, 1.0, 2.2, 0.75)
    bs[:, INDEX["mouthLowerDownLeft"]] = bs[:, INDEX["mouthLowerDownRight"]] = _bump(t, 1.0, 2.2, 0.3)
    smile = _bump(t, 2.5, 4.0, 0.85)
    for name in ("mouthSmileLeft", "mouthSmileRight"):
        bs[:, INDEX[name]] = smile
    for name in ("cheekSquintLeft", "cheekSquintRight"):
        bs[:, INDEX[name]] = 0.4 * smile
    brows = _bump(t, 4.0, 5.3, 0.9)
    bs[:, INDEX["browInnerUp"]] = brows
    bs[:, INDEX["browOuterUpLeft"]] = bs[:, INDEX["browOuterUpRight"]] = 0.7 * brows
    bs[:, INDEX["eyeWideLeft"]] = bs[:, INDEX["eyeWideRight"]] = 0.3 * brows

    gaze = _saccades(t, [(1.3, 0.25, 0.0), (2.9, -0.22, -0.05), (4.3, 0.0, 0.18), (5.2, 0.0, 0.0)])
    yaw = 0.18 * np.sin(2 * math.pi * t / cfg.seconds)
    pitch = 0.07 * np.sin(2 * math.pi * t / 3.0)
    roll = 0.05 * np.sin(2 * math.pi * t / 4.0 + 1.0)
    base = framing(cfg.fov_y_deg, cfg.fill, cfg.width / cfg.height)
    rng = np.random.default_rng(cfg.seed)
    identity = (0.8 * rng.standard_normal(100)).astype(np.float32)

    frames = []
    for i in range(len(t)):
        g = (float(gaze[i, 0]), float(gaze[i, 1]))
        shapes = gaze_blendshapes(bs[i], g, g)
        frames.append(RenderParams(
            identity=identity, blendshapes=shapes,
            head_rotation=from_yaw_pitch_roll(yaw[i], pitch[i], roll[i]),
            head_position=(base[0] + 0.01 * math.sin(2 * math.pi * t[i] / 5.0), base[1], base[2]),
            gaze_left=g, gaze_right=g, skin_tone=0.35, light_direction=(0.4, 0.5, 1.0),
            ambient=0.38, specular=0.08, background="gradient", background_color=(0.62, 0.66, 0.72),
            fov_y_deg=cfg.fov_y_deg, seed=cfg.seed,
        ))
    return frames


def _encode(frames: list[np.ndarray], out: Path, fps: int, crf: int) -> str:
    """Write RGB frames to ``out``; returns the codec used."""
    h, w = frames[0].shape[:2]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "slow", "-crf", str(crf),
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]
        proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
        if proc.returncode == 0:
            return "h264"
        print(f"ffmpeg failed ({proc.stderr.decode(errors='replace').strip()}); falling back to OpenCV mp4v",
              file=sys.stderr)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {out} with mp4v; install ffmpeg and re-run")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return "mp4v"


def detection_rate(video: Path) -> tuple[int, int]:
    """(frames where MediaPipe face mesh finds a face, frames decoded) for a video file."""
    import mediapipe as mp

    cap = cv2.VideoCapture(str(video))
    found = total = 0
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True, max_num_faces=1,
                                         min_detection_confidence=0.5) as fm:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            total += 1
            found += fm.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).multi_face_landmarks is not None
    cap.release()
    return found, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("avatar_bridge/assets/demo.mp4"))
    ap.add_argument("--no-check", action="store_true", help="skip the MediaPipe detection check")
    args = ap.parse_args(argv)
    cfg = DemoClipConfig()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    timeline = clip_timeline(cfg)
    with Renderer(cfg.width, cfg.height) as renderer:
        results = [renderer.render(p) for p in timeline]
    codec = _encode([r.image for r in results], args.out, cfg.fps, cfg.crf)
    truth = args.out.with_name(args.out.stem + "_truth.npz")
    np.savez_compressed(
        truth,
        blendshapes=np.stack([r.blendshapes for r in results]).astype(np.float32),
        head_rotation=np.array([r.head_rotation for r in results], np.float32),
        head_position=np.array([r.head_position for r in results], np.float32),
        gaze_left=np.array([r.gaze_left for r in results], np.float32),
        gaze_right=np.array([r.gaze_right for r in results], np.float32),
        landmarks68=np.stack([r.landmarks68 for r in results]).astype(np.float32),
        t=(np.arange(len(results)) / cfg.fps).astype(np.float32),
        fps=np.float32(cfg.fps),
        names=np.array(ARKIT_BLENDSHAPES),
    )
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({len(results)} frames, {cfg.width}x{cfg.height}, {codec}, {size_kb:.0f} KB) and {truth}")
    if not args.no_check:
        found, total = detection_rate(args.out)
        print(f"MediaPipe finds the face in {found}/{total} decoded frames")
        if total != len(results) or found < 0.95 * total:
            print("the clip fails its check: fewer than 95% of frames have a face", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
