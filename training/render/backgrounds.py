"""Procedural backgrounds behind the rendered face: solid, gradient, clutter."""

from __future__ import annotations

import cv2
import numpy as np

def background_image(kind: str, color, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 RGB procedural background: ``solid``, ``gradient`` (vertical, from
    ``color`` to a darker, hue-shifted copy) or ``clutter`` (blurred shapes over noise)."""
    rng = np.random.default_rng(seed + 7919)
    c = np.asarray(color, np.float32)
    if kind == "solid":
        img = np.broadcast_to(c, (height, width, 3)).copy()
    elif kind == "gradient":
        other = np.clip(c * rng.uniform(0.3, 0.8) + rng.uniform(-0.15, 0.15, 3), 0, 1)
        t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(c * (1 - t) + other * t, (height, width, 3)).copy()
    elif kind == "clutter":
        img = np.broadcast_to(c, (height, width, 3)).copy()
        for _ in range(int(rng.integers(8, 25))):
            col = tuple(float(x) for x in rng.uniform(0, 1, 3))
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            if rng.random() < 0.5:
                w, h = int(rng.integers(width // 10, width // 2)), int(rng.integers(height // 10, height // 2))
                cv2.rectangle(img, (x, y), (x + w, y + h), col, -1)
            else:
                cv2.circle(img, (x, y), int(rng.integers(width // 20, width // 5)), col, -1)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3.0))
        img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown background {kind!r}; use 'solid', 'gradient' or 'clutter', "
                         "or pass background_image")
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
