"""Trains the lower-face network of headset mode on occluded ICT-FaceKit crops and exports it to ONNX.

The whole run (docs/model_card.md, "Lower-face network"): render + crop, then train, on one CPU
thread, in about a quarter of an hour::

    python -m training.headset_data --frames 4000 --out /tmp/headset_train.npz
    python -m training.train_headset --data /tmp/headset_train.npz --out blendshape_model/weights/lower_face.onnx

``--smoke`` renders a handful of frames and trains for a few steps (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX, MIRROR_PERMUTATION
from avatar_bridge.tracking.lower_face import CROP_SIZE
from training.headset_data import LOWER_FACE_SHAPES, LOWER_INDEX, build_crops

# Column j of a mirrored crop's target is column FLIP[j] of the original (Left <-> Right).
_POS = {int(i): j for j, i in enumerate(LOWER_INDEX)}
FLIP = np.array([_POS[MIRROR_PERMUTATION[int(i)]] for i in LOWER_INDEX])


@dataclass(frozen=True)
class HeadsetTrainConfig:
    epochs: int = 16
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    width: int = 16              # channels of the first block; the others are multiples (16: ~20 s an epoch)
    seed: int = 0
    threads: int = 1             # the machine is shared; one thread keeps the run predictable


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LowerFaceNet(nn.Module):
    """A small CNN: (N, 3, 64, 64) RGB in [0, 1] -> (N, len(LOWER_FACE_SHAPES)) weights (``Clamped`` to [0, 1])."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 2),                                   # 32 x 32 (no second block here: it cost half the time)
            _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),      # 16 x 16
            _block(2 * w, 3 * w, 2), _block(3 * w, 3 * w, 1),  # 8 x 8
            _block(3 * w, 4 * w, 2),                           # 4 x 4: where the lips are still matters
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w * 16, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, len(LOWER_FACE_SHAPES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (unclamped) weights: training's MSE sees them linear. A sigmoid here saturated: with
        each shape at 0 in ~95 % of the crops its logit sank until no gradient was left (tried)."""
        return self.head(self.features(x))


class Clamped(nn.Module):
    """What is exported: the weights clamped to [0, 1]."""

    def __init__(self, net: LowerFaceNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(x), 0.0, 1.0)


def _tensor(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


def train(data: dict[str, np.ndarray], cfg: HeadsetTrainConfig, progress: bool = True) -> tuple[LowerFaceNet, dict]:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    crops, targets = data["crops"], data["targets"]
    # Split by rendered frame (crops of one frame come in consecutive pairs), never inside a frame.
    n = len(crops)
    per_frame = int(data.get("crops_per_frame", 2))
    frames = np.arange(n) // per_frame
    n_val = int(frames.max() * cfg.val_fraction)
    val = frames >= frames.max() + 1 - n_val if n_val else np.zeros(n, bool)
    tr_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    model = LowerFaceNet(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, len(tr_idx) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.15)
    y_all = torch.from_numpy(targets)
    var = targets[tr_idx].var(0) + 1e-3
    shape_weight = torch.from_numpy((1.0 / var) / np.mean(1.0 / var)).float()
    flip = torch.from_numpy(FLIP)
    started, step, history = time.perf_counter(), 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(tr_idx)
        total = 0.0
        for b in range(len(order) // cfg.batch):
            idx = order[b * cfg.batch:(b + 1) * cfg.batch]
            x, y = _tensor(crops[idx]), y_all[idx]
            mirror = torch.from_numpy(rng.random(len(idx)) < 0.5)
            # A mirrored crop is a face with its sides swapped: flip the image, swap the Left/Right labels.
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            y = torch.where(mirror[:, None], y[:, flip], y)
            # MSE, not an L1-like loss: each shape is active in ~5 % of the crops, and an L1 loss's
            # optimum (the median) is then 0 for all of them. Each shape's error is scaled by its
            # spread, or jawOpen (active in 65 %) outweighs the rest and they stay constant (tried).
            loss = (((model(x) - y) ** 2) * shape_weight).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            step += 1
        v = evaluate(model, crops[val_idx], targets[val_idx]) if len(val_idx) else {}
        history.append({"epoch": epoch + 1, "train_loss": total / max(1, len(order) // cfg.batch), **v})
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs} loss {history[-1]['train_loss']:.4f} "
                  + (f"val jawOpen r {v['jawOpen_r']:.3f} mean r {v['mean_r']:.3f} " if v else "")
                  + f"{time.perf_counter() - started:.0f} s", flush=True)
    return model.eval(), {"history": history, "train_crops": int(len(tr_idx)), "val_crops": int(len(val_idx)),
                          "seconds": time.perf_counter() - started, "config": asdict(cfg)}


@torch.no_grad()
def predict(model: LowerFaceNet, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.clip(np.concatenate([model(_tensor(crops[i:i + batch])).numpy() for i in range(0, len(crops), batch)]), 0, 1)


def evaluate(model: LowerFaceNet, crops: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Pearson r per shape that moves in the set; mean over them and jawOpen's."""
    pred = predict(model, crops)
    rs = {}
    for j, name in enumerate(LOWER_FACE_SHAPES):
        if targets[:, j].std() > 1e-3 and pred[:, j].std() > 1e-6:
            rs[name] = float(np.corrcoef(pred[:, j], targets[:, j])[0, 1])
    return {"mean_r": float(np.mean(list(rs.values()))) if rs else float("nan"),
            "jawOpen_r": rs.get("jawOpen", float("nan"))}


def export(model: LowerFaceNet, path: Path, info: dict) -> Path:
    """ONNX (opset 17, dynamic batch) with the output shape names and the run's summary as metadata."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, CROP_SIZE, CROP_SIZE)
    torch.onnx.export(Clamped(model).eval(), dummy, str(path), input_names=["crop"], output_names=["lower_face"],
                      dynamic_axes={"crop": {0: "batch"}, "lower_face": {0: "batch"}}, opset_version=17,
                      dynamo=False, do_constant_folding=True)
    m = onnx.load(str(path))
    for key, value in {"shapes": json.dumps(list(LOWER_FACE_SHAPES)), "crop_size": str(CROP_SIZE),
                       "input": "RGB uint8 crop / 255, NCHW", "training": json.dumps(info)}.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(m, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="crops from training.headset_data (rendered here if omitted)")
    ap.add_argument("--out", type=Path, required=True, help="the .onnx to write")
    ap.add_argument("--epochs", type=int, default=HeadsetTrainConfig.epochs)
    ap.add_argument("--smoke", action="store_true", help="a few rendered frames and a few steps (for tests)")
    a = ap.parse_args(argv)
    if a.smoke:
        data, cfg = build_crops(24, seed=5, progress=False), HeadsetTrainConfig(epochs=2, batch=16, width=8)
    else:
        data = dict(np.load(a.data)) if a.data else build_crops(4000, seed=16)
        cfg = HeadsetTrainConfig(epochs=a.epochs)
    model, info = train(data, cfg, progress=not a.smoke)
    export(model, a.out, {k: v for k, v in info.items() if k != "history"} | {"final": info["history"][-1]})
    print(json.dumps({"out": str(a.out), **info["history"][-1], "seconds": round(info["seconds"], 1)}))


if __name__ == "__main__":
    main()
