"""Trains the lower-face point network of headset mode: 42 jaw, nose-base and lip points placed in the
lower-face crop to a fraction of a pixel, from ICT-FaceKit renders with painted headsets.

Why points: benchmarks/headset_ceiling.py shows the lower-face shapes are in the 2D geometry of these
points (mean r 0.86 read from the true ones, 0.57 with 1 % of the jaw width of noise), while
MediaPipe's mesh under a visor is several times less precise (0.24) and a network reading the shapes
straight from the crop learns them slowly (docs/model_card.md). Points are dense, smooth supervision;
the shapes are then read from them by a ridge readout (``fit_point_readout``) fitted on the network's
*own* points on frames it never trained on, so the readout learns the network's errors as they are.

The net: a small encoder to 8 x 8 and back up to 16 x 16 (one skip), one heatmap per point, and each
point the heatmap's expected position (soft-argmax: sub-pixel, trained end to end with an L1 loss on
the coordinates).
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

from training.headset_data import KEYPOINT_FLIP, KEYPOINTS
from training.train_headset import Crops, _block, _tensor, export_crop_model, fit_readout


@dataclass(frozen=True)
class PointTrainConfig:
    epochs: int = 18             # the shipped run (docs/model_card.md); ~3 min an epoch on 2 threads
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 24
    seed: int = 0
    threads: int = 2


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class LowerPointsNet(nn.Module):
    """(N, 3, 64, 64) RGB in [0, 1] -> (N, K, 2) points in crop units (0..1 across the crop)."""

    def __init__(self, width: int = 24, points: int = len(KEYPOINTS)) -> None:
        super().__init__()
        w = width
        self.down16 = nn.Sequential(_block(3, w, 2), _Res(w), _block(w, 2 * w, 2), _Res(2 * w))       # 16 x 16
        self.down8 = nn.Sequential(_block(2 * w, 4 * w, 2), _Res(4 * w), _Res(4 * w))               # 8 x 8
        self.up = nn.Sequential(_block(6 * w, 3 * w, 1), _Res(3 * w))
        self.heat = nn.Conv2d(3 * w, points, 1)
        grid = (torch.arange(16, dtype=torch.float32) + 0.5) / 16
        self.register_buffer("gx", grid.view(1, 1, 1, 16), persistent=False)
        self.register_buffer("gy", grid.view(1, 1, 16, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down16(x)
        b = nn.functional.interpolate(self.down8(a), scale_factor=2.0, mode="bilinear", align_corners=False)
        h = self.heat(self.up(torch.cat([a, b], 1)))
        p = torch.softmax(h.flatten(2), -1).view_as(h)
        return torch.stack([(p * self.gx).sum((2, 3)), (p * self.gy).sum((2, 3))], -1)


def train_points(data: dict[str, np.ndarray], cfg: PointTrainConfig, train_idx: np.ndarray, val_idx: np.ndarray,
                 progress: bool = True, checkpoint: str | None = None) -> tuple[LowerPointsNet, dict]:
    """Train on crops cut anew each epoch from the frames ``train_idx``; report the median point error on
    fixed crops of ``val_idx`` in % of the jaw width each epoch (and save the weights to ``checkpoint``)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source = Crops(data, rng)
    val_crops, _, val_kp = source.get(val_idx, fixed=True)
    model = LowerPointsNet(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = max(1, len(train_idx) // cfg.batch)
    # (at least 20 steps: a shorter one-cycle schedule has no warm-up step left)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=max(20, cfg.epochs * per_epoch), pct_start=0.1)
    kflip = torch.from_numpy(KEYPOINT_FLIP)
    started, history = time.perf_counter(), []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for b in range(per_epoch):
            crops, _, kp = source.get(order[b * cfg.batch:(b + 1) * cfg.batch])
            x, kp = _tensor(crops), torch.from_numpy(kp)
            mirror = torch.from_numpy(rng.random(len(x)) < 0.5)
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            kp = torch.where(mirror[:, None, None], kp[:, kflip] * torch.tensor([-1.0, 1.0]) + torch.tensor([1.0, 0.0]), kp)
            loss = (model(x) - kp).abs().mean() * 64      # crop pixels
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            if progress and b % 100 == 0:
                print(f"  epoch {epoch + 1} step {b}/{per_epoch} loss {total / (b + 1):.3f} px "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
        err = point_error(predict_points(model, val_crops), val_kp)
        history.append({"epoch": epoch + 1, "train_l1_px": total / per_epoch, "val_median_err_jaw": err})
        if checkpoint:
            torch.save(model.state_dict(), checkpoint)
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs} train L1 {total / per_epoch:.3f} px, val median error "
                  f"{err:.2%} of the jaw width, {time.perf_counter() - started:.0f} s", flush=True)
    return model.eval(), {"history": history, "config": asdict(cfg), "seconds": time.perf_counter() - started}


def point_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Median point distance over the jaw width (points 0 -> 16 of the 68, KEYPOINTS' first and 17th)."""
    jaw = np.linalg.norm(true[:, 16] - true[:, 0], axis=1, keepdims=True)
    return float(np.median(np.linalg.norm(pred - true, axis=2) / jaw))


@torch.no_grad()
def predict_points(model: LowerPointsNet, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(_tensor(crops[i:i + batch])).numpy() for i in range(0, len(crops), batch)])


def readout_rows(model: LowerPointsNet, data: dict[str, np.ndarray], idx: np.ndarray, crops_per_frame: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The readout's rows from the network's points on ``crops_per_frame`` crops of each frame in
    ``idx`` (cut as training cuts them), taken to frame pixels: (``point_features`` (M, F), the same
    for the mirrored faces, their blendshapes (M, 52))."""
    from avatar_bridge.estimators.lower_face import point_features
    from training.headset_data import VIEWS, cut_crop

    rng = np.random.default_rng(seed)
    source = Crops(data, rng)
    crops, boxes, rows = [], [], []
    for i in idx:
        mesh = source.box("mesh_boxes", i)
        for _ in range(crops_per_frame):
            c, _, box = cut_crop(data["images"][i], data["l68"][i], VIEWS[int(data["views"][i])], mesh, rng)
            crops.append(c)
            boxes.append(box.as_tuple())
            rows.append(i)
    b = np.array(boxes, np.float64)
    pts = predict_points(model, np.stack(crops)) * b[:, None, 2:] + b[:, None, :2]
    mirrored = pts[:, KEYPOINT_FLIP] * (-1.0, 1.0)
    return point_features(pts), point_features(mirrored), data["blendshapes"][np.array(rows)]


def export(model: LowerPointsNet, path: Path, info: dict) -> Path:
    """ONNX: crop -> (N, K, 2) points in crop units, with the points' Multi-PIE indices and the run's
    summary as metadata."""
    return export_crop_model(model, path, "points", {"points": json.dumps([int(i) for i in KEYPOINTS]),
                                                     "output": "points, crop units (0..1 across)",
                                                     "training": json.dumps(info)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", help="whole frames from python -m training.headset_data")
    ap.add_argument("--out", type=Path, required=True, help="the point network's .onnx to write")
    ap.add_argument("--readout-out", type=Path, required=True, help="the shapes readout's .npz to write")
    ap.add_argument("--epochs", type=int, default=PointTrainConfig.epochs)
    ap.add_argument("--width", type=int, default=PointTrainConfig.width)
    ap.add_argument("--readout-share", type=float, default=0.2,
                    help="the last share of frames: never trained on, the readout is fitted on the network's points there")
    ap.add_argument("--crops-per-frame", type=int, default=3, help="readout rows per readout frame")
    ap.add_argument("--smoke", action="store_true", help="a few rendered frames and a few steps (for tests)")
    a = ap.parse_args(argv)
    if a.smoke:
        from training.headset_data import render_frames
        data, cfg = render_frames(24, seed=5, progress=False), PointTrainConfig(epochs=2, batch=8, width=8)
    elif not a.data:
        ap.error("--data is needed (or --smoke); write frames with python -m training.headset_data")
    else:
        try:
            parts = [dict(np.load(p)) for p in a.data]
            data = {k: np.concatenate([p[k] for p in parts]) for k in ("images", "l68", "blendshapes", "views",
                                                                       "boxes", "mesh_boxes")}
        except (OSError, KeyError, ValueError) as exc:
            ap.error(f"{exc}: --data wants whole-frame files from python -m training.headset_data")
        cfg = PointTrainConfig(epochs=a.epochs, width=a.width)
    n = len(data["l68"])
    cut = int(n * (1 - a.readout_share))
    model, info = train_points(data, cfg, np.arange(cut), np.arange(cut, n), progress=not a.smoke)
    arrays, readout_info = fit_readout(*readout_rows(model, data, np.arange(cut, n), a.crops_per_frame, cfg.seed))
    a.readout_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.readout_out, **arrays, points=np.asarray(KEYPOINTS, np.int32))
    export(model, a.out, {"config": info["config"], "final": info["history"][-1], "readout": readout_info})
    print(json.dumps({"out": str(a.out), "readout_out": str(a.readout_out), **info["history"][-1],
                      "readout": readout_info, "seconds": round(info["seconds"], 1)}))


if __name__ == "__main__":
    main()
