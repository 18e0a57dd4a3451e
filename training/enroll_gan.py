"""Fine-tune the shipped face-texture GAN to one performer's enrolled crops (``avatar-bridge
enroll`` calls this; torch is needed, the `train` extra).

Starts from blendshape_model/weights/texture_gan.pt (encoder, generator, critic and the frozen
coefficient reader), trains on (reference, target) pairs drawn from the performer's own crops
with the same losses as training/gan.py at a lower learning rate, and exports the fp32 and
int8 models beside the crops, with the most neutral crop as the reference face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blendshape_model.texture import WEIGHTS
from training.export_gan import ExportGanConfig, export
from training.gan import GanTrainConfig, load_pairs, train

BASE = WEIGHTS / "texture_gan.pt"


def finetune(crops: Path, out: Path, steps: int = 300, base: Path = BASE, progress: bool = True,
             int8: bool = True) -> dict:
    """Fine-tune on ``crops`` (from avatar_bridge.runtime.enroll.record); everything goes to ``out``."""
    if not Path(base).is_file():
        raise FileNotFoundError(f"the base texture checkpoint {base} is missing; reinstall avatar-bridge")
    summary = train(GanTrainConfig(data=str(crops), out=str(out), init=str(base), steps=steps, reader_steps=0,
                                   lr_g=3e-4, lr_d=6e-4, log_every=max(1, min(25, steps)), export=False),
                    progress=progress)
    data = load_pairs(str(crops))
    neutral = int(np.argmin(data["blendshapes"].sum(1) + 4 * np.abs(data["pose"]).sum(1)))
    files = export(ExportGanConfig(checkpoint=str(Path(out) / "gan.pt"), out=str(out), calibration=str(crops),
                                   calibration_frames=32), reference=data["images"][neutral], int8=int8)
    return {"summary": summary, "files": files}
