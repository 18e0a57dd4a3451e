"""The dashboard panel: what it shows (from the bus) and what its buttons do (pure; OpenCV draws it).

Shown: tracking on/off (a status message within ``stale_s``), face found, headset mode, where the
head pose comes from (HMD or camera), fps, and the strongest tracked shapes with bars. Buttons:
Calibrate (a neutral-face calibration) and Recenter (the camera-to-HMD offset: look at the camera,
press it); both are control-socket requests, ``click`` returns the one to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.bus import wire
from avatar_bridge.regions import untracked_shape_mask


@dataclass(frozen=True)
class Button:
    name: str
    label: str
    x: int
    y: int
    w: int
    h: int
    request: dict[str, Any] = field(default_factory=dict)

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


@dataclass(frozen=True)
class OverlayConfig:
    width: int = 512                # texture pixels (the overlay's mouse scale is the same)
    height: int = 320
    top_shapes: int = 5
    stale_s: float = 2.5            # no status for this long: the daemon counts as off
    calibrate_seconds: float = 2.0


@dataclass(frozen=True)
class PanelView:
    """Everything the panel shows, as values (what the tests read)."""

    tracking: bool
    face: bool
    headset: bool
    head_source: str
    fps: float
    shapes: tuple[tuple[str, float], ...]
    message: str = ""


class OverlayModel:
    """Folds bus messages into a PanelView, draws it, and maps clicks to control requests."""

    def __init__(self, config: OverlayConfig = OverlayConfig()) -> None:
        self.config = config
        self._status: dict[str, Any] = {}
        self._status_at = -1e18
        self._face: dict[str, Any] | None = None
        self.message = ""
        w, h = config.width, config.height
        bw, bh = (w - 48) // 2, 56
        self.buttons = (
            Button("calibrate", "Calibrate", 16, h - bh - 16, bw, bh,
                   {"cmd": "calibrate", "kind": "neutral", "seconds": config.calibrate_seconds}),
            Button("recenter", "Recenter", 32 + bw, h - bh - 16, bw, bh, {"cmd": "head.recenter"}),
        )

    def on_status(self, status: dict[str, Any], now: float) -> None:
        self._status, self._status_at = status, now

    def on_face(self, msg: dict[str, Any]) -> None:
        """A validated schema-v1 face map (wire.decode_face_message)."""
        self._face = msg

    def on_reply(self, name: str, reply: dict[str, Any]) -> None:
        self.message = f"{name}: {reply['error']}" if "error" in reply else f"{name}: ok"

    def view(self, now: float) -> PanelView:
        tracking = now - self._status_at <= self.config.stale_s
        face = self._face
        shapes: tuple[tuple[str, float], ...] = ()
        if face is not None and tracking:
            bs = np.asarray(face["bs"], np.float32)
            bs = np.where(untracked_shape_mask(wire.untracked_regions(face)), -1.0, bs)   # never show a guess
            order = [i for i in np.argsort(-bs, kind="stable")[: self.config.top_shapes] if bs[i] > 0.0]
            shapes = tuple((ARKIT_BLENDSHAPES[i], float(bs[i])) for i in order)
        head = self._status.get("head", {}) if tracking else {}
        return PanelView(tracking=tracking, face=bool(tracking and face is not None and face["present"]),
                         headset=bool(tracking and self._status.get("headset")),
                         head_source=str(head.get("source", "camera")) if tracking else "-",
                         fps=float(self._status.get("fps", 0.0)) if tracking else 0.0, shapes=shapes,
                         message=self.message)

    def click(self, x: float, y: float) -> tuple[str, dict[str, Any]] | None:
        """(button name, control request) for a click at texture pixel (x, y from the top), or None."""
        for b in self.buttons:
            if b.contains(x, y):
                return b.name, dict(b.request)
        return None

    def render(self, now: float) -> np.ndarray:
        """(height, width, 4) uint8 RGBA of the panel."""
        v = self.view(now)
        w, h = self.config.width, self.config.height
        img = np.zeros((h, w, 4), np.uint8)
        img[...] = (24, 26, 32, 235)
        green, red, grey, white = (90, 220, 120, 255), (235, 90, 80, 255), (150, 150, 160, 255), (235, 235, 240, 255)

        def text(s: str, x: int, y: int, colour=white, scale: float = 0.6) -> None:
            cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)

        text("avatar-bridge", 16, 30, white, 0.8)
        text(f"tracking {'on' if v.tracking else 'off'}", 16, 60, green if v.tracking else red)
        text(f"face {'found' if v.face else 'not found'}", 180, 60, green if v.face else grey)
        text(f"{v.fps:4.1f} fps", 380, 60, white if v.tracking else grey)
        text(f"headset mode {'on' if v.headset else 'off'}", 16, 88, white if v.headset else grey)
        text(f"head from {v.head_source}", 250, 88, grey)
        for k, (name, value) in enumerate(v.shapes):
            y = 116 + 24 * k
            text(name, 16, y + 12, white, 0.5)
            cv2.rectangle(img, (200, y), (200 + int(round(280 * value)), y + 14), green, -1)
        for b in self.buttons:
            cv2.rectangle(img, (b.x, b.y), (b.x + b.w, b.y + b.h), (60, 90, 160, 255), -1)
            text(b.label, b.x + 20, b.y + b.h // 2 + 8, white, 0.7)
        if v.message:
            text(v.message[:60], 16, h - 84, grey, 0.45)
        return img
