"""Frame sources: webcam, video file, image directory, the built-in demo clip.

Every source yields ``Frame``s (RGB). Live sources stamp ``t_capture`` with ``time.monotonic()``;
file sources read as fast as possible stamp it with the media time (seconds from the start), so
offline processing keeps the video's own timing.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import PIL.Image

from avatar_bridge.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source that cannot be opened; the text says what to try instead."""


@dataclass(frozen=True)
class SourceConfig:
    spec: str = "demo"               # "demo", "camera:N", a video path, or an image directory
    realtime: bool = True            # pace files at their frame rate (off: as fast as possible)
    loop: bool = False               # restart a file source at its end
    fps: float = 30.0                # frame rate of an image directory
    width: int = 640                 # requested camera resolution
    height: int = 480
    max_retry_s: float = 5.0         # cap on the backoff between camera reconnects
    # An image folder's images are measured from their headers before decoding, and bigger ones are
    # skipped with a warning: a 442 KB PNG can declare 12000x12000 pixels (432 MB decoded, 1.5 GB peak).
    max_image_side: int = 8192
    max_image_pixels: int = 40_000_000


def demo_clip_path() -> Path:
    return Path(str(resources.files("avatar_bridge") / "assets" / "demo.mp4"))


class FileSource:
    """A video file or an image directory, optionally looped and paced in real time."""

    def __init__(self, config: SourceConfig, path: Path, name: str) -> None:
        self.config = config
        self.path = path
        self.name = name
        if path.is_dir():
            self._images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise SourceError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                  "point --source at a folder of frames or a video file")
            self.fps = config.fps
        elif path.is_file():
            self._images = None
            cap = cv2.VideoCapture(str(path))
            ok = cap.isOpened() and cap.read()[0]
            self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            cap.release()
            if not ok:
                raise SourceError(f"cannot decode {path} as a video; is it a video file (mp4, mkv, avi, mov)?")
        else:
            raise SourceError(f"no such file or folder: {path}. Give a video file or a folder of images "
                              "(`run --source` also takes demo and camera:N)")

    def _image_problem(self, path: Path) -> str | None:
        """Why ``path`` must not be decoded (too big, or no image header Pillow knows), else None.
        Pillow reads only the header here; OpenCV has no per-call size limit, so it decodes after."""
        side, pixels = self.config.max_image_side, self.config.max_image_pixels
        too_big = f"is more than this source decodes (at most {side} px a side and {pixels / 1e6:g} MP); scale it down"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)   # we say it ourselves
                with PIL.Image.open(path) as im:
                    width, height = im.size
        except PIL.Image.DecompressionBombError:
            return f"its header declares over {2 * (PIL.Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP, which {too_big}"
        except (OSError, ValueError) as exc:
            return f"not a readable image ({exc})"
        if max(width, height) > side or width * height > pixels:
            return f"{width}x{height} pixels {too_big}"
        return None

    def _raw(self) -> Iterator[tuple[np.ndarray, float]]:
        """(BGR image, media time in seconds) for one pass over the file."""
        if self._images is not None:
            for i, p in enumerate(self._images):
                problem = self._image_problem(p)
                img = None if problem else cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    log.warning("skipping %s: %s", p, problem or "not a readable image")
                    continue
                yield img, i / self.fps
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            i = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                # Some containers report 0 for every frame; fall back to the nominal rate.
                yield img, (t if t > 0 or i == 0 else i / self.fps)
                i += 1
        finally:
            cap.release()

    def frames(self) -> Iterator[Frame]:
        index = 0
        start = time.monotonic()
        offset = 0.0  # media time of the current pass's start, so looping keeps time increasing
        while True:
            last_t = 0.0
            for img, t in self._raw():
                media_t = offset + t
                if self.config.realtime:
                    delay = start + media_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    stamp = time.monotonic()
                else:
                    stamp = media_t
                yield Frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), index, stamp, self.name)
                index += 1
                last_t = t
            if not self.config.loop or index == 0:
                return
            offset += last_t + 1.0 / self.fps


class CameraSource:
    """An OpenCV camera. A camera that disappears is retried with backoff; the iterator only ends
    when ``stop()`` is called, so the daemon stays up through an unplug."""

    def __init__(self, config: SourceConfig, device: int) -> None:
        self.config = config
        self.device = device
        self.name = f"camera:{device}"
        self.fps = 30.0
        self._stopped = False
        self.reconnects = 0
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(f"camera {device} cannot be opened. Run `avatar-bridge devices` to list cameras, "
                              "or use --source demo / a video file")

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # we want the newest frame, not a backlog
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        return cap

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        """Release the camera now. Only for a source whose ``frames`` is not running (a daemon that
        failed to start); a running loop releases it itself once stopped."""
        self._stopped = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def frames(self) -> Iterator[Frame]:
        index, backoff = 0, 0.25
        while not self._stopped:
            ok, img = (self._cap.read() if self._cap is not None else (False, None))
            if ok:
                backoff = 0.25
                yield Frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), index, time.monotonic(), self.name)
                index += 1
                continue
            if self._cap is not None:
                log.warning("%s stopped delivering frames; reconnecting", self.name)
                self._cap.release()
                self._cap = None
            time.sleep(backoff)
            backoff = min(backoff * 2, self.config.max_retry_s)
            self._cap = self._open()
            if self._cap is not None:
                self.reconnects += 1
                log.info("%s is back", self.name)
        if self._cap is not None:
            self._cap.release()


def open_source(config: SourceConfig) -> FileSource | CameraSource:
    """Open the source named by ``config.spec``; raises SourceError with a hint when it cannot."""
    spec = config.spec
    if spec == "demo":
        path = demo_clip_path()
        if not path.exists():
            raise SourceError(f"the built-in demo clip is missing at {path}; reinstall avatar-bridge")
        # The demo loops by default: `avatar-bridge run` with no arguments should stream until stopped.
        return FileSource(SourceConfig(**{**config.__dict__, "loop": config.loop or config.realtime}), path, "demo")
    if spec.startswith("camera:"):
        try:
            device = int(spec.split(":", 1)[1])
        except ValueError:
            raise SourceError(f"bad camera spec {spec!r}; use camera:0, camera:1, ...") from None
        return CameraSource(config, device)
    path = Path(spec).expanduser()
    return FileSource(config, path, path.name)


def list_cameras(max_index: int = 8) -> list[dict]:
    """Probe camera indices 0..max_index-1 and describe the ones that open."""
    found = []
    for i in range(max_index):
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            found.append({"device": f"camera:{i}", "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": cap.get(cv2.CAP_PROP_FPS)})
        cap.release()
    return found
