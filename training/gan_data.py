"""Render the face-texture GAN's training set: many ICT-FaceKit identities, each seen with several
expressions and head poses, with exact labels (``python -m training.gan_data --help``).

One identity keeps its skin, hair, eyes, light and background across its frames. Its frame 0 is
neutral and frontal: the reference, as at run time (the shipped mean face, an enrolled
performer's most neutral crop); every frame is a target that differs from it only in expression
and pose, what the generator must learn to change. Framing is fixed and face-filling (the texture is a face crop, not a scene).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.conventions import from_yaw_pitch_roll
from training.generate import parse_dataclass_args
from training.render import Renderer, framing, random_params

SIZE = 128          # the texture's side in pixels, everywhere (generator output, training renders)
FOV_DEG = 30.0
FILL = 0.85         # face height / frame height: the whole face with a little forehead and chin


@dataclass(frozen=True)
class GanDataConfig:
    out: str = "cache/gan/train.npz"   # one npz: images, blendshapes, pose, identity index
    identities: int = 120              # distinct faces
    per_identity: int = 12             # frames (expression + pose) per face
    # Head pose range: small, the texture is a near-frontal face crop. A first run with +-20/12/8
    # degrees learnt no expression in its CPU budget (docs/texture_model_card.md).
    max_yaw_deg: float = 6.0
    max_pitch_deg: float = 5.0
    max_roll_deg: float = 4.0
    seed: int = 0                      # held-out sets use another seed (disjoint identities)


def render_set(config: GanDataConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """Render the set in memory: ``images`` (N, 128, 128, 3) uint8 RGB, ``blendshapes`` (N, 52),
    ``pose`` (N, 3) yaw/pitch/roll radians, ``identity`` (N,) int32 (frames of one face share it)."""
    rng = np.random.default_rng(config.seed)
    n = config.identities * config.per_identity
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    shapes = np.zeros((n, len(ARKIT_BLENDSHAPES)), np.float32)
    pose = np.zeros((n, 3), np.float32)
    ident = np.repeat(np.arange(config.identities, dtype=np.int32), config.per_identity)
    position = framing(FOV_DEG, FILL)
    limits = np.radians([config.max_yaw_deg, config.max_pitch_deg, config.max_roll_deg])
    with Renderer(SIZE, SIZE) as renderer, tqdm(total=n, desc="render", disable=not progress) as bar:
        for i in range(config.identities):
            look = random_params(rng)     # this face's identity, skin, light and background
            # (its random head rotation is not kept: each frame sets its own, frame 0 none)
            look = replace(look, background="solid", fov_y_deg=FOV_DEG, head_position=position)
            for k in range(config.per_identity):
                expr = random_params(rng)  # only its expression and gaze are taken
                ypr = rng.uniform(-1, 1, 3) * limits
                p = replace(look, blendshapes=expr.blendshapes, gaze_left=expr.gaze_left,
                            gaze_right=expr.gaze_right,
                            head_rotation=from_yaw_pitch_roll(*(float(a) for a in ypr)))
                if k == 0:   # frame 0: neutral, frontal, eyes ahead: the reference, as at run time
                    ypr = np.zeros(3)
                    p = replace(look, blendshapes=np.zeros(len(ARKIT_BLENDSHAPES), np.float32),
                                gaze_left=(0.0, 0.0), gaze_right=(0.0, 0.0), head_rotation=(0.0, 0.0, 0.0, 1.0))
                j = i * config.per_identity + k
                images[j] = renderer.render(p).image
                shapes[j] = p.blendshapes
                pose[j] = ypr
                bar.update()
    return {"images": images, "blendshapes": shapes, "pose": pose, "identity": ident}


def main(argv=None) -> None:
    config = parse_dataclass_args(GanDataConfig, argv, __doc__.splitlines()[0])
    data = render_set(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **data, config=np.array(str(asdict(config))))
    print(f"{len(data['images'])} frames of {config.identities} faces -> {out}")


if __name__ == "__main__":
    main()
