"""Trains the lower-face network of headset mode on occluded ICT-FaceKit crops and exports it to ONNX.

The whole run (docs/model_card.md, "Lower-face network"): render whole frames, then train on one CPU
thread, cutting new crops from them every epoch::

    for k in $(seq 0 39); do python -m training.headset_data --frames 500 --seed $((5000 + k)) --out /tmp/hs_$(printf %02d $k).npz; done
    python -m training.train_headset --data /tmp/hs_*.npz --out blendshape_model/weights/lower_face.onnx \
        --keypoint-weight 0 --mesh-out blendshape_model/weights/lower_face_mesh.npz

(the shipped network from those 40 files; the shipped readout from 80, seeds 5000-5079, as more
meshes help it: docs/model_card.md.)

Optionally (``--keypoint-weight``) the network also places 42 Multi-PIE points (jaw line, nose base,
lips) in its crop, a second head trained jointly and not exported: meant as dense geometric
supervision, it lowered val jawOpen r in the measured runs, so it is off by default (model card).
``--mesh-out`` also fits the face-mesh readout (``fit_mesh_readout``), which reads the mouth shapes
where MediaPipe fits a face.

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

from avatar_bridge.arkit import MIRROR_PERMUTATION
from avatar_bridge.tracking.lower_face import CROP_SIZE, Box
from training.headset_data import (KEYPOINT_FLIP, KEYPOINTS, LOWER_FACE_SHAPES, LOWER_INDEX, VIEWS,
                                   build_crops, cut_crop)

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
    keypoint_weight: float = 0.0  # the keypoint head's loss against the weights' (0: off; 1 lost, model card)
    seed: int = 0
    threads: int = 1             # the machine is shared; one thread keeps the run predictable


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LowerFaceNet(nn.Module):
    """A small CNN: (N, 3, 64, 64) RGB in [0, 1] -> (N, len(LOWER_FACE_SHAPES)) weights (``Clamped`` to [0, 1])."""

    def __init__(self, width: int = 32, keypoints: int = len(KEYPOINTS)) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 2),                                   # 32 x 32 (no second block here: it cost half the time)
            _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),      # 16 x 16
            _block(2 * w, 3 * w, 2), _block(3 * w, 3 * w, 1),  # 8 x 8
            _block(3 * w, 4 * w, 2),                           # 4 x 4: where the lips are still matters
        )
        # Both heads read one hidden layer, so what places the lip points is there for the weights.
        self.hidden = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w * 16, 128), nn.ReLU(inplace=True))
        self.head = nn.Linear(128, len(LOWER_FACE_SHAPES))
        self.keypoints = nn.Linear(128, 2 * keypoints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (unclamped) weights: training's MSE sees them linear. A sigmoid here saturated: with
        each shape at 0 in ~95 % of the crops its logit sank until no gradient was left (tried)."""
        return self.head(self.hidden(self.features(x)))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, keypoints (N, K, 2) in crop units 0..1)."""
        h = self.hidden(self.features(x))
        return self.head(h), self.keypoints(h).view(len(x), -1, 2)


class Clamped(nn.Module):
    """What is exported: the weights clamped to [0, 1]."""

    def __init__(self, net: LowerFaceNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(x), 0.0, 1.0)


def _tensor(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


class Crops:
    """Training crops either fixed (``build_crops``: crops, targets, keypoints) or cut anew from whole
    frames each time they are drawn (``render_frames``: images, ...), so no two epochs see the same crop."""

    def __init__(self, data: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        self.data, self.rng = data, rng
        self.frames = "images" in data
        if self.frames:
            self.targets = data["blendshapes"][:, LOWER_INDEX].astype(np.float32)
            self.groups = np.arange(len(self.targets))
        else:
            self.targets = data["targets"]
            self.groups = np.arange(len(self.targets)) // int(data.get("crops_per_frame", 2))

    def __len__(self) -> int:
        return len(self.targets)

    def box(self, key: str, i: int) -> Box | None:
        """Frame ``i``'s box under ``key`` ("boxes", "mesh_boxes"), None where there is none."""
        b = self.data[key][i]
        return None if not np.isfinite(b[0]) else Box(*(float(v) for v in b))

    def get(self, idx: np.ndarray, fixed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crops uint8, targets, keypoints) for ``idx``; ``fixed``: from frames, each one's mesh box
        if the mesh fitted, else its user-like box (what validation reads every epoch)."""
        if not self.frames:
            return self.data["crops"][idx], self.targets[idx], self.data["keypoints"][idx]
        crops, kps = [], []
        for i in idx:
            view, mesh = VIEWS[int(self.data["views"][i])], self.box("mesh_boxes", i)
            first = (mesh or self.box("boxes", i)) if fixed else None
            rng = np.random.default_rng(int(i)) if fixed else self.rng
            c, k, _ = cut_crop(self.data["images"][i], self.data["l68"][i], view, mesh, rng, first=first)
            crops.append(c)
            kps.append(k)
        return np.stack(crops), self.targets[idx], np.stack(kps)


def train(data: dict[str, np.ndarray], cfg: HeadsetTrainConfig, progress: bool = True) -> tuple[LowerFaceNet, dict]:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source = Crops(data, rng)
    # Split by rendered frame (crops of one frame come in consecutive pairs), never inside a frame.
    n, frames = len(source), source.groups
    n_val = int(frames.max() * cfg.val_fraction)
    val = frames >= frames.max() + 1 - n_val if n_val else np.zeros(n, bool)
    tr_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    val_crops, val_targets, _ = source.get(val_idx, fixed=True) if len(val_idx) else (None, None, None)
    model = LowerFaceNet(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, len(tr_idx) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.15)
    var = source.targets[tr_idx].var(0) + 1e-3
    # 1 / spread: a constant guess then scores 1 on both losses, so keypoint_weight compares like with like.
    shape_weight = torch.from_numpy(1.0 / var).float()
    flip, kflip = torch.from_numpy(FLIP), torch.from_numpy(KEYPOINT_FLIP)
    kp_spread = None
    started, step, history = time.perf_counter(), 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(tr_idx)
        total = total_kp = 0.0
        for b in range(len(order) // cfg.batch):
            crops, y, kp = source.get(order[b * cfg.batch:(b + 1) * cfg.batch])
            x, y, kp = _tensor(crops), torch.from_numpy(y), torch.from_numpy(kp)
            if kp_spread is None:     # each coordinate's error scaled by its spread (fixed from the first batch)
                kp_spread = kp.std(0).clamp_min(0.02)
            mirror = torch.from_numpy(rng.random(len(x)) < 0.5)
            # A mirrored crop is a face with its sides swapped: flip the image, swap the Left/Right labels
            # (and the points: x becomes 1 - x and each point its mirror twin).
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            y = torch.where(mirror[:, None], y[:, flip], y)
            kp_m = kp[:, kflip] * torch.tensor([-1.0, 1.0]) + torch.tensor([1.0, 0.0])
            kp = torch.where(mirror[:, None, None], kp_m, kp)
            pred, pred_kp = model.forward_both(x)
            # MSE, not an L1-like loss: each shape is active in ~5 % of the crops, and an L1 loss's
            # optimum (the median) is then 0 for all of them. Each shape's error is scaled by its
            # spread, or jawOpen (active in 65 %) outweighs the rest and they stay constant (tried).
            loss = (((pred - y) ** 2) * shape_weight).mean()
            kp_loss = (((pred_kp - kp) / kp_spread) ** 2).mean()
            opt.zero_grad()
            (loss + cfg.keypoint_weight * kp_loss).backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            total_kp += float(kp_loss.detach())
            step += 1
        v = evaluate(model, val_crops, val_targets) if len(val_idx) else {}
        nb = max(1, len(order) // cfg.batch)
        history.append({"epoch": epoch + 1, "train_loss": total / nb, "keypoint_loss": total_kp / nb, **v})
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs} loss {history[-1]['train_loss']:.4f} "
                  f"keypoints {history[-1]['keypoint_loss']:.4f} "
                  + (f"val jawOpen r {v['jawOpen_r']:.3f} mean r {v['mean_r']:.3f} " if v else "")
                  + f"{time.perf_counter() - started:.0f} s", flush=True)
    return model.eval(), {"history": history, "train_crops": int(len(tr_idx)), "val_crops": int(len(val_idx)),
                          "seconds": time.perf_counter() - started, "config": asdict(cfg),
                          "frames": bool(source.frames)}


def ridge(a: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights for design rows ``a`` (bias column last, not shrunk) and targets ``y``."""
    reg = lam * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(a.T @ a + reg, a.T @ y)


def fit_mesh_readout(frames: dict[str, np.ndarray], **kw) -> tuple[dict, dict]:
    """The ridge readout of the lower-face shapes from the face mesh (``MeshReadout``), fitted on the
    frames the mesh fitted and their mirror images (landmarks mirrored, Left/Right labels swapped):
    (the .npz's arrays, {"val_mean_r", "val_jawOpen_r" on the last ``val_fraction`` of frames, "frames"})."""
    from avatar_bridge.estimators.lower_face import MESH_POINTS, mesh_features
    from avatar_bridge.tracking.face_landmarks import landmark_mirror_permutation

    ok = np.isfinite(frames["meshes"][:, 0, 0])
    meshes = frames["meshes"][ok]
    mirrored = meshes[:, landmark_mirror_permutation()].copy()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    arrays, info = fit_readout(mesh_features(meshes), mesh_features(mirrored), frames["blendshapes"][ok], **kw)
    return arrays | {"points": np.array(MESH_POINTS, np.int32)}, info


def fit_readout(x: np.ndarray, x_mirrored: np.ndarray, blendshapes: np.ndarray, lam: float = 0.3,
                val_fraction: float = 0.1, features: int = 1500, gamma: float = 0.3, seed: int = 0) -> tuple[dict, dict]:
    """A ``RidgeReadout`` of the lower-face shapes from features ``x`` (N, F) and the mirrored faces'
    ``x_mirrored`` (their targets: ``blendshapes`` (N, 52) with Left/Right swapped): standardised
    features and random Fourier features, one ridge solve on every row (scored first on the last
    ``val_fraction`` of rows, fitted on the rest: "val_mean_r", "val_jawOpen_r")."""
    y = blendshapes[:, LOWER_INDEX].astype(np.float64)
    ym = blendshapes[:, list(MIRROR_PERMUTATION)][:, LOWER_INDEX].astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    rng = np.random.default_rng(seed)
    proj = rng.normal(0.0, gamma / np.sqrt(x.shape[1]), (x.shape[1], features))
    phase = rng.uniform(0.0, 2 * np.pi, features)
    from avatar_bridge.estimators.lower_face import RidgeReadout

    design = lambda f: RidgeReadout.design(f, mean, std, proj, phase)  # noqa: E731

    def solve(rows: np.ndarray) -> np.ndarray:
        return ridge(np.concatenate([design(x[rows]), design(x_mirrored[rows])]),
                     np.concatenate([y[rows], ym[rows]]), lam)

    n_val = int(len(x) * val_fraction)
    info = {"frames": int(len(x))}
    if n_val >= 10:
        w = solve(np.arange(len(x) - n_val))
        pred = np.clip(design(x[-n_val:]) @ w, 0, 1)
        rs = {n: float(np.corrcoef(pred[:, j], y[-n_val:, j])[0, 1]) for j, n in enumerate(LOWER_FACE_SHAPES)
              if y[-n_val:, j].std() > 0.05}
        info |= {"val_mean_r": float(np.mean(list(rs.values()))), "val_jawOpen_r": rs["jawOpen"]}
    w = solve(np.arange(len(x)))                      # the shipped fit uses every row
    arrays = {"shapes": np.array(LOWER_FACE_SHAPES), "mean": mean.astype(np.float32), "std": std.astype(np.float32),
              "proj": proj.astype(np.float32), "phase": phase.astype(np.float32), "weights": w.astype(np.float32)}
    return arrays, info


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
    return export_crop_model(Clamped(model), path, "lower_face",
                             {"shapes": json.dumps(list(LOWER_FACE_SHAPES)), "training": json.dumps(info)})


def export_crop_model(module: nn.Module, path: Path, output: str, metadata: dict[str, str]) -> Path:
    """A lower-face crop model to ONNX (opset 17, dynamic batch, input ``crop``: RGB / 255, NCHW,
    CROP_SIZE square) with ``metadata`` and the crop size as metadata."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module.eval(), torch.zeros(1, 3, CROP_SIZE, CROP_SIZE), str(path), input_names=["crop"],
                      output_names=[output], dynamic_axes={"crop": {0: "batch"}, output: {0: "batch"}},
                      opset_version=17, dynamo=False, do_constant_folding=True)
    m = onnx.load(str(path))
    for key, value in {"crop_size": str(CROP_SIZE), "input": "RGB uint8 crop / 255, NCHW", **metadata}.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(m, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+",
                    help="frames from training.headset_data, one or more files joined (rendered here if omitted)")
    ap.add_argument("--out", type=Path, required=True, help="the .onnx to write")
    ap.add_argument("--epochs", type=int, default=HeadsetTrainConfig.epochs)
    ap.add_argument("--width", type=int, default=HeadsetTrainConfig.width)
    ap.add_argument("--keypoint-weight", type=float, default=HeadsetTrainConfig.keypoint_weight,
                    help="the keypoint head's share of the loss (0: weights only)")
    ap.add_argument("--mesh-out", type=Path, help="also fit the face-mesh readout and write it here (.npz)")
    ap.add_argument("--smoke", action="store_true", help="a few rendered frames and a few steps (for tests)")
    a = ap.parse_args(argv)
    if a.smoke:
        data, cfg = build_crops(24, seed=5, progress=False), HeadsetTrainConfig(epochs=2, batch=16, width=8)
    else:
        from training.headset_data import render_frames
        if a.data:
            parts = [dict(np.load(p)) for p in a.data]
            data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            data = render_frames(20000, seed=16)
        cfg = HeadsetTrainConfig(epochs=a.epochs, width=a.width, keypoint_weight=a.keypoint_weight)
    if a.mesh_out is not None:
        if "meshes" not in data:
            ap.error("--mesh-out needs whole frames with their meshes (python -m training.headset_data)")
        arrays, mesh_info = fit_mesh_readout(data)
        a.mesh_out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(a.mesh_out, **arrays)
        print(json.dumps({"mesh_out": str(a.mesh_out), **mesh_info}), flush=True)
    model, info = train(data, cfg, progress=not a.smoke)
    export(model, a.out, {k: v for k, v in info.items() if k != "history"} | {"final": info["history"][-1]})
    print(json.dumps({"out": str(a.out), **info["history"][-1], "seconds": round(info["seconds"], 1)}))


if __name__ == "__main__":
    main()
