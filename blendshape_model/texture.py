"""Runs the face-texture GAN (encoder + generator, exported by training/gan.py) with onnxruntime.

numpy + OpenCV + onnxruntime only (the runtime path never imports torch). The encoder runs once per
reference face; the generator once per texture frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.estimators.base import cpu_session

WEIGHTS = Path(__file__).parent / "weights"
SIZE = 128   # the generator's output side, pixels


@dataclass(frozen=True)
class TextureModelConfig:
    model_dir: str = str(WEIGHTS)        # holds texture_encoder.onnx, texture_generator[.int8].onnx, texture_reference.png
    int8: bool = False                   # the pruned + int8 generator (faster, a little less exact)
    reference: str | None = None         # a face image to take the appearance from; None: the model dir's
    threads: int = 1                     # intra-op threads; one keeps the coefficient path's cores free


class TextureModelError(RuntimeError):
    """A texture model or reference image is missing or unreadable; the text says what to do."""


def _session(path: Path, threads: int):
    if not path.is_file():
        raise TextureModelError(f"texture model not found at {path}; train and export one with "
                                "`python -m training.gan` (docs/texture_model_card.md)")
    return cpu_session(path, threads)


def read_reference(path: str | Path) -> np.ndarray:
    """An image file as (128, 128, 3) uint8 RGB, centre-cropped square and resized."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TextureModelError(f"cannot read the reference face image {path}; give a PNG or JPEG")
    return square(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def square(image: np.ndarray) -> np.ndarray:
    """Centre-crop to a square and resize to the texture size (RGB uint8 in and out)."""
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(image[y:y + s, x:x + s], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


class TextureGenerator:
    """``set_reference(image)`` fixes whose face it draws; ``generate(blendshapes, head_rotation)``
    returns that face with this expression and head pose as (128, 128, 3) uint8 RGB."""

    def __init__(self, config: TextureModelConfig = TextureModelConfig()) -> None:
        self.config = config
        d = Path(config.model_dir)
        gen_name = "texture_generator.int8.onnx" if config.int8 else "texture_generator.onnx"
        self.encoder = _session(d / "texture_encoder.onnx", config.threads)
        self.generator = _session(d / gen_name, config.threads)
        self._code: dict[str, np.ndarray] | None = None
        ref = config.reference or (d / "texture_reference.png")
        self.set_reference(read_reference(ref))

    def set_reference(self, image: np.ndarray) -> None:
        """Encode one face image (RGB uint8, any size: centre-cropped and resized to 128)."""
        img = square(image) if image.shape[:2] != (SIZE, SIZE) else image
        x = (img.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        names = [o.name for o in self.encoder.get_outputs()]
        self._code = dict(zip(names, self.encoder.run(None, {"reference": x})))

    def generate_array(self, blendshapes: np.ndarray, pose_ypr: np.ndarray) -> np.ndarray:
        """(52,) coefficients + (3,) yaw/pitch/roll radians -> (3, 128, 128) float32 in 0..1."""
        feed = {**self._code, "blendshapes": np.asarray(blendshapes, np.float32).reshape(1, -1),
                "pose": np.asarray(pose_ypr, np.float32).reshape(1, 3)}
        return self.generator.run(None, feed)[0][0]

    def generate(self, blendshapes: np.ndarray, head_rotation=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
        ypr = np.clip(head_yaw_pitch_roll(head_rotation), -0.6, 0.6)   # beyond the trained range
        out = self.generate_array(blendshapes, np.asarray(ypr, np.float32))
        return np.ascontiguousarray((out.transpose(1, 2, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8))
