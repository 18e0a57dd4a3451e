"""Enrolment for personalised face textures: record the performer's face crops with the estimated
coefficients, locally, under their profile (``avatar-bridge enroll``; fine-tuning is training/enroll_gan.py).

Everything written goes to one folder beside the calibration profile, ``<profile dir>/<name>.face/``,
so ``enroll --delete`` removes all of it; nothing is sent anywhere (no socket is opened).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.runtime.pipeline import Pipeline, PipelineConfig
from avatar_bridge.runtime.texture import enrolled_dir
from avatar_bridge.tracking.sources import SourceConfig, open_source
from avatar_bridge.types import FaceObservation

SIZE = 128

CONSENT_TEXT = (
    "Enrolment records your face from {source} for {seconds:.0f} s: face images (128x128) and the "
    "expression values estimated from them, saved only on this computer in\n  {where}\n"
    "and used to fine-tune the face-texture generator to your face. Nothing is uploaded or sent "
    "anywhere. `avatar-bridge enroll --delete --profile {profile}` deletes all of it.")


@dataclass(frozen=True)
class EnrollConfig:
    profile: str
    profile_dir: str
    source: SourceConfig = SourceConfig()
    pipeline: PipelineConfig = PipelineConfig()
    seconds: float = 120.0             # how long to record
    max_frames: int | None = None      # stop after this many faces (tests)
    every: int = 2                     # keep every n-th tracked frame (neighbours are near copies)


def face_crop(obs: FaceObservation) -> np.ndarray:
    """A square (128, 128, 3) RGB crop around the landmarks, framed like the training renders
    (the face about 85 % of the height, centred a little above the nose)."""
    img = obs.frame.image
    h, w = img.shape[:2]
    pts = obs.landmarks[:, :2] * np.array([w, h], np.float32)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    side = max(x1 - x0, y1 - y0) / 0.8
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.04 * side
    m = np.array([[SIZE / side, 0, SIZE / 2 - cx * SIZE / side], [0, SIZE / side, SIZE / 2 - cy * SIZE / side]],
                 np.float32)
    return cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def record(config: EnrollConfig, on_frame: Callable[[int, float], None] | None = None) -> Path:
    """Record crops + coefficients into ``<name>.face/crops.npz``; returns that path."""
    out = enrolled_dir(Path(config.profile_dir), config.profile)
    out.mkdir(parents=True, exist_ok=True)
    crops, shapes, poses = [], [], []
    source = open_source(config.source)
    pipeline = Pipeline.create(config.pipeline)
    t0 = time.monotonic()
    try:
        for i, frame in enumerate(source.frames()):
            elapsed = time.monotonic() - t0
            if elapsed > config.seconds or (config.max_frames and len(crops) >= config.max_frames):
                break
            state, _ = pipeline.process(frame)
            obs = pipeline.last_observation
            if obs is None or not state.face_present or i % config.every:
                continue
            crops.append(face_crop(obs))
            shapes.append(state.blendshapes)
            poses.append(head_yaw_pitch_roll(state.head_rotation))
            if on_frame:
                on_frame(len(crops), elapsed)
    finally:
        pipeline.close()
        getattr(source, "close", lambda: None)()
    if len(crops) < 2:
        raise ValueError(f"only {len(crops)} face frames were recorded from {config.source.spec}; "
                         "face the camera in good light and try again")
    path = out / "crops.npz"
    np.savez_compressed(path, images=np.stack(crops), blendshapes=np.stack(shapes).astype(np.float32),
                        pose=np.asarray(poses, np.float32), identity=np.zeros(len(crops), np.int32))
    return path


def delete(profile: str, profile_dir: Path) -> Path | None:
    """Remove everything enrolment stored for ``profile``; returns the folder removed, or None."""
    where = enrolled_dir(profile_dir, profile)
    if not where.exists():
        return None
    shutil.rmtree(where)
    return where
