"""The daemon's face-texture thread: the newest FaceState in, a generated face JPEG out.

The frame loop hands over each published state with ``offer`` (a reference store, no copy, no
wait) and collects finished JPEGs with ``take`` to send them on its own PUB socket (ZeroMQ sockets
belong to one thread). Generation and JPEG encoding happen here, at most ``fps`` times a second,
always on the newest state, so a slow generator skips states and never delays a coefficient.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextureConfig:
    enabled: bool = False
    fps: float = 15.0                 # textures per second at most (the generator runs this often)
    quality: int = 85                 # JPEG quality 1..100
    int8: bool = False                # the pruned + int8 generator
    model_dir: str | None = None      # None: the profile's enrolled face if it has one, else the shipped model
    reference: str | None = None      # a face image to draw (overrides the model dir's reference)
    virtual_camera: bool = False      # also send each texture to a pyvirtualcam camera (OBS, calls)


@dataclass(frozen=True)
class Texture:
    """One encoded texture and the face state it shows."""

    jpeg: bytes
    seq: int              # the `seq` of the face message it was made from
    frame_index: int
    width: int
    height: int


class TextureThread:
    """Generates textures from the newest offered state on its own thread (``start``/``stop``)."""

    def __init__(self, config: TextureConfig, generator, sink: Callable[[np.ndarray], None] | None = None) -> None:
        self.config = config
        self.generator = generator        # blendshape_model.texture.TextureGenerator or a stand-in
        self.sink = sink                  # e.g. a virtual camera's send; called on this thread
        self._cond = threading.Condition()
        self._state: tuple[int, FaceState] | None = None
        self._ready: Texture | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="texture", daemon=True)
        self.generated = 0
        self.skipped = 0                  # offered states never drawn (the newest wins)
        self.errors = 0
        self.ms: deque[float] = deque(maxlen=120)

    def start(self) -> None:
        self._thread.start()

    def offer(self, seq: int, state: FaceState) -> None:
        with self._cond:
            if self._state is not None:
                self.skipped += 1
            self._state = (seq, state)
            self._cond.notify()

    def take(self) -> Texture | None:
        """The texture finished since the last call, if any (called by the frame loop)."""
        with self._cond:
            ready, self._ready = self._ready, None
            return ready

    def _loop(self) -> None:
        period = 1.0 / max(self.config.fps, 0.1)
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                while self._state is None and not self._stop.is_set():
                    self._cond.wait(0.1)
                item, self._state = self._state, None
            if item is None:
                break
            try:
                texture = self._make(*item)
            except Exception:  # a bad state or a model fault costs one texture, not the thread
                self.errors += 1
                log.exception("texture for face seq %d failed; skipping it", item[0])
                continue
            with self._cond:
                self._ready = texture
            next_t = max(next_t + period, time.monotonic())
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _make(self, seq: int, state: FaceState) -> Texture:
        t0 = time.perf_counter()
        rgb = self.generator.generate(state.blendshapes, state.head_rotation)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(self.config.quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        if self.sink is not None:
            self.sink(rgb)
        self.generated += 1
        self.ms.append((time.perf_counter() - t0) * 1000)
        return Texture(buf.tobytes(), seq, state.frame_index, rgb.shape[1], rgb.shape[0])

    def stats(self) -> dict:
        return {"generated": self.generated, "skipped": self.skipped, "errors": self.errors,
                "median_ms": float(np.median(self.ms)) if self.ms else 0.0, "fps_limit": self.config.fps}

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)


def enrolled_dir(profile_dir: Path, profile: str) -> Path:
    """Where ``avatar-bridge enroll --profile NAME`` keeps that person's face model and crops."""
    from avatar_bridge.signal.profile import profile_path
    return profile_path(profile, profile_dir).with_suffix(".face")


def open_texture(config: TextureConfig, profile_dir: Path, profile: str):
    """The texture generator and (if asked) virtual camera for ``config``; raises with what to do."""
    from blendshape_model.texture import TextureGenerator, TextureModelConfig
    from avatar_bridge.runtime.virtual_camera import VirtualCamera, VirtualCameraConfig
    model_dir = config.model_dir
    if model_dir is None:
        mine = enrolled_dir(profile_dir, profile)
        if (mine / "texture_generator.onnx").is_file():
            model_dir = str(mine)
            log.info("texture: the face enrolled for profile %s (%s)", profile, mine)
    kwargs = {"model_dir": model_dir} if model_dir else {}
    generator = TextureGenerator(TextureModelConfig(int8=config.int8, reference=config.reference, **kwargs))
    camera = VirtualCamera(VirtualCameraConfig(fps=config.fps)) if config.virtual_camera else None
    return generator, camera
