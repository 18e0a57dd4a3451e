"""A thin layer over pyvirtualcam: the face texture as a webcam for OBS, Discord and video calls.

Kept thin on purpose (open, send, close) because the real device (v4l2loopback on Linux, the OBS
camera on Windows/macOS) cannot exist in tests; they pass a stand-in ``camera_factory`` with
pyvirtualcam.Camera's signature instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class VirtualCameraConfig:
    width: int = 128            # the texture size; pyvirtualcam scales nothing, callers see this size
    height: int = 128
    fps: float = 15.0
    device: str | None = None   # e.g. /dev/video10; None: pyvirtualcam's first free device


class VirtualCameraError(RuntimeError):
    """No virtual camera could be opened; the text says what to install or start."""


def _pyvirtualcam_camera(**kwargs) -> Any:
    try:
        import pyvirtualcam
    except ImportError as exc:
        raise VirtualCameraError("--virtual-camera needs pyvirtualcam: pip install 'avatar-bridge[camera]' "
                                 "(and on Linux the v4l2loopback module)") from exc
    try:
        return pyvirtualcam.Camera(fmt=pyvirtualcam.PixelFormat.RGB, **kwargs)
    except RuntimeError as exc:   # pyvirtualcam's error when no backend/device is available
        raise VirtualCameraError(f"cannot open a virtual camera: {exc}. On Linux: sudo modprobe "
                                 "v4l2loopback; on Windows/macOS install OBS and start its virtual camera once") from exc


class VirtualCamera:
    """Opens the camera on construction; ``send(rgb)`` one (H, W, 3) uint8 frame; ``close()``."""

    def __init__(self, config: VirtualCameraConfig,
                 camera_factory: Callable[..., Any] = _pyvirtualcam_camera) -> None:
        self.config = config
        kwargs = {"width": config.width, "height": config.height, "fps": config.fps}
        if config.device:
            kwargs["device"] = config.device
        self._cam = camera_factory(**kwargs)
        self.sent = 0

    def send(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.config.height, self.config.width, 3):
            raise ValueError(f"virtual camera frame is {rgb.shape}, expected "
                             f"{(self.config.height, self.config.width, 3)}")
        self._cam.send(rgb)
        self.sent += 1

    def close(self) -> None:
        self._cam.close()
