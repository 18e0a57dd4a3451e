"""Train the blendshape network on the tracker cache (nanoGPT-style: one config, one loop).

    python -m training.train --data cache/synth/train --out runs/ship          # this CPU
    torchrun --nproc_per_node 8 -m training.train --data ... --device cuda      # multi-GPU (DDP)

Under ``torchrun`` every process trains on its own random windows (seeded by seed + rank) and
DistributedDataParallel averages the gradients (gloo on CPU, nccl on CUDA). Rank 0 writes a
self-describing checkpoint (model config, weights, train config, data summary, metrics, time)
and exports ONNX next to it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from blendshape_model.features import N_LANDMARKS
from blendshape_model.model import create_model, model_config, model_from_checkpoint
from training.dataset import SequenceSet, load_cache
from training.dataclass_cli import parse_dataclass_args


@dataclass(frozen=True)
class TrainConfig:
    data: str = "cache/synth/train"   # cached set(s); several folders joined by commas
    out: str = "runs/ship"          # checkpoint, summary and ONNX go here
    model: str = "bsnet_small"      # bsnet_tiny | bsnet_small | bsnet_base
    init: str = ""                 # a checkpoint to start from (fine-tuning; its model and feature statistics)
    steps: int = 3000              # optimiser steps
    batch: int = 32                # windows per process per step
    window: int = 16               # frames per window (the GRU unrolls this far)
    lr: float = 2e-3               # Adam peak learning rate
    min_lr_frac: float = 0.05      # cosine decay to lr * this
    warmup: int = 100              # linear warm-up steps
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    shape_weight: float = 4.0       # blendshape terms vs gaze (rad) and pose (rad) terms
    gaze_weight: float = 1.0
    pose_weight: float = 2.0
    # Crop alignment jitter (per frame, standard deviations): the tracker fits its similarity to
    # three points with LMEDS, so two near-identical frames (or a frame and its mirror) can be cut a
    # few pixels or a degree apart; training on jittered crops makes the network indifferent to it.
    jitter_deg: float = 2.0        # rotation, degrees
    jitter_scale: float = 0.03     # log scale
    jitter_px: float = 1.5         # crop pixels
    val_fraction: float = 0.05     # source sequences held out for validation curves
    eval_every: int = 250
    seed: int = 0
    device: str = "cpu"
    threads: int = 0               # torch threads per process; 0 = cores / processes
    max_sequences: int = 0         # 0 = all cached sequences
    export: bool = True
    log_every: int = 50


def pose_targets(data: SequenceSet) -> np.ndarray:
    """(S, T, 3) rotation vector taking the PnP rotation to the true one (camera frame)."""
    S, T = data.found.shape
    true = Rotation.from_quat(data.head_quat.reshape(-1, 4))
    pnp = Rotation.from_matrix(data.pnp_rot.reshape(-1, 3, 3).astype(np.float64))
    delta = (true * pnp.inv()).as_rotvec().reshape(S, T, 3)
    delta[~data.found] = 0.0
    return delta.astype(np.float32)


class WindowSampler:
    """Random fully-tracked windows of ``window`` frames from the sequences in ``rows``."""

    def __init__(self, data: SequenceSet, rows: np.ndarray, window: int, seed: int) -> None:
        self.data, self.window, self.rng = data, window, np.random.default_rng(seed)
        T = data.found.shape[1]
        valid = []
        for s in rows:
            ok = data.found[s].astype(int)
            run = np.convolve(ok, np.ones(window, int), "valid")     # frames found in each window
            valid += [(s, t) for t in np.flatnonzero(run == window)]
        if not valid:
            raise ValueError(f"no fully tracked {window}-frame window in the data; is the cache empty? ({T} frames/seq)")
        self.valid = np.array(valid)
        self.pose = pose_targets(data)

    def batch(self, n: int, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        rng = rng or self.rng
        pick = self.valid[rng.integers(0, len(self.valid), n)]
        idx = pick[:, :1], pick[:, 1:] + np.arange(self.window)[None]
        d = self.data
        return {"crop": torch.from_numpy(d.crops[idx]), "eyes": torch.from_numpy(d.eyes[idx]),
                "features": torch.from_numpy(d.features[idx]),
                "blendshapes": torch.from_numpy(d.blendshapes[idx]), "gaze": torch.from_numpy(d.gaze[idx]),
                "pose": torch.from_numpy(self.pose[idx])}


def photometric_jitter(images: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    """Per-window brightness/contrast/colour jitter, the same on each of ``images`` (uint8, window
    first, channels last: the crops and the eye patches cut from them). The cache already holds
    blur/noise/JPEG/occlusion; this varies exposure further at no rendering cost."""
    b = images[0].shape[0]
    gain = torch.empty(b).uniform_(0.75, 1.25, generator=gen)
    colour = torch.empty(b, 3).uniform_(0.92, 1.08, generator=gen)
    bias = torch.empty(b).uniform_(-20, 20, generator=gen)
    out = []
    for x in images:
        lead = (b,) + (1,) * (x.dim() - 2)
        y = x.float() * gain.view(lead + (1,)) * colour.view(lead + (3,)) + bias.view(lead + (1,))
        out.append(y.clamp_(0, 255).to(torch.uint8))
    return out


def crop_jitter(crop: torch.Tensor, features: torch.Tensor, cfg: TrainConfig,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-cut every crop (B, T, S, S, 3) uint8 with a small random similarity about its centre and
    move the crop-frame landmarks (the first N_LANDMARKS * 3 features, centred crop units) with it,
    so the crop and its landmarks still agree; the other features do not depend on the crop."""
    b, t, s = crop.shape[:3]
    n = b * t
    angle = torch.randn(n, generator=gen) * math.radians(cfg.jitter_deg)
    scale = torch.exp(torch.randn(n, generator=gen) * cfg.jitter_scale)
    shift = torch.randn(n, 2, generator=gen) * (2 * cfg.jitter_px / s)        # crop units: 2 / S a pixel
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)   # (n, 2, 2)
    # The content moves p -> scale * rot @ p + shift; grid_sample wants the inverse map.
    inv = rot.transpose(1, 2) / scale[:, None, None]
    theta = torch.cat([inv, -(inv @ shift[:, :, None])], dim=2)
    img = crop.reshape(n, s, s, 3).permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta, (n, 3, s, s), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    crop = img.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(b, t, s, s, 3)
    k = N_LANDMARKS * 3
    pts = features[..., :k].reshape(n, N_LANDMARKS, 3)
    xy = pts[..., :2] @ (scale[:, None, None] * rot).transpose(1, 2) + shift[:, None]
    z = pts[..., 2:] * scale[:, None, None]
    features = torch.cat([torch.cat([xy, z], -1).reshape(b, t, k), features[..., k:]], dim=-1)
    return crop.contiguous(), features


def losses(model, batch: dict, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    h = torch.zeros(1, batch["crop"].shape[0], model_config(cfg.model).gru_hidden, device=batch["crop"].device)
    bs, gaze, pose, _ = model(batch["crop"], batch["eyes"], batch["features"], h, True)
    w = batch.get("shape_weights")
    w = torch.ones(bs.shape[-1], device=bs.device) if w is None else w
    target = batch["blendshapes"]
    # BCE on the logits: its gradient (p - y) never vanishes, also for shapes that sit at 0.
    # The targets' own entropy is subtracted (BCE - H(y) = KL >= 0, 0 when exact), so the
    # loss reads like an error and its gradient is unchanged.
    y = target.clamp(1e-6, 1 - 1e-6)
    entropy = -(y * y.log() + (1 - y) * (1 - y).log())
    l_bs = ((F.binary_cross_entropy_with_logits(bs, target, reduction="none") - entropy) * w).mean()
    diff = torch.sigmoid(bs) - target
    l_gaze = F.l1_loss(gaze, batch["gaze"])
    l_pose = F.l1_loss(pose, batch["pose"])
    total = cfg.shape_weight * l_bs + cfg.gaze_weight * l_gaze + cfg.pose_weight * l_pose
    return {"loss": total, "bs_mae": diff.abs().mean().detach(), "gaze_mae": l_gaze.detach(), "pose_mae": l_pose.detach()}


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def train(cfg: TrainConfig, data: SequenceSet | None = None, progress: bool = True) -> dict:
    """Run training; returns the checkpoint dict (also saved to ``cfg.out/ckpt.pt`` by rank 0)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(cfg.device)
    if ddp:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(cfg.seed)           # same initial weights on every rank
    t_start = time.time()

    data = data if data is not None else load_cache(cfg.data, cfg.max_sequences or None)
    ids = np.unique(data.seq_id)
    val_ids = np.random.default_rng(cfg.seed).choice(ids, size=max(1, int(len(ids) * cfg.val_fraction)), replace=False) \
        if cfg.val_fraction > 0 and len(ids) > 1 else np.array([], int)
    is_val = np.isin(data.seq_id, val_ids)
    train_rows = np.flatnonzero(~is_val)
    sampler = WindowSampler(data, train_rows, cfg.window, cfg.seed + 1000 * rank)
    val_sampler = WindowSampler(data, np.flatnonzero(is_val), cfg.window, 12345) if is_val.any() else None
    val_batch = val_sampler.batch(256) if val_sampler else None
    # Each shape's loss is scaled by 1 / (its spread + 0.05), mean 1: a shape that rarely moves
    # (dimple, press, sneer) otherwise costs so little that the network never learns to read it.
    spread = data.blendshapes[train_rows][data.found[train_rows]].std(0)
    shape_weights = torch.from_numpy((1.0 / (spread + 0.05)) / np.mean(1.0 / (spread + 0.05))).float()
    if val_batch is not None:
        val_batch["shape_weights"] = shape_weights

    if cfg.init:
        start = torch.load(cfg.init, map_location="cpu", weights_only=False)
        if start["model_config"]["name"] != cfg.model:
            raise ValueError(f"--init {cfg.init} holds a {start['model_config']['name']}, not --model {cfg.model}")
        model = model_from_checkpoint(start).train()
    else:
        model = create_model(cfg.model)
        train_feats = data.features[train_rows][data.found[train_rows]]
        model.set_feature_stats(train_feats.mean(0), train_feats.std(0))
    model = model.to(device)
    raw = model
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(raw.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 7 * rank)
    history = []
    show = progress and rank == 0
    cols = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not show) as bar:
        task = bar.add_task("steps", total=cfg.steps, info="")
        for step in range(cfg.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            batch = sampler.batch(cfg.batch)
            batch["crop"], batch["eyes"] = photometric_jitter([batch["crop"], batch["eyes"]], gen)
            if cfg.jitter_deg or cfg.jitter_scale or cfg.jitter_px:
                batch["crop"], batch["features"] = crop_jitter(batch["crop"], batch["features"], cfg, gen)
            batch["shape_weights"] = shape_weights
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            model.train()
            out = losses(model, batch, cfg)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
            opt.step()
            record = {"step": step, **{k: float(v.detach()) for k, v in out.items()}}
            if val_batch is not None and ((step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1):
                record.update(validate(raw, val_batch, cfg, device))
            if step % cfg.log_every == 0 or "val_loss" in record:
                history.append(record)
                if show and ("val_loss" in record or not bar.console.is_terminal):
                    bar.console.print(" ".join(f"{k} {v:.4g}" for k, v in record.items()))
                bar.update(task, info=f"loss {record['loss']:.4f}" + (f" val {record['val_bs_mae']:.4f}" if "val_bs_mae" in record else ""))
            bar.advance(task)

    ckpt = {
        "model_config": asdict(raw.config), "model": {k: v.cpu() for k, v in raw.state_dict().items()},
        "train_config": asdict(cfg), "history": history, "final": history[-1] if history else {},
        "data": {"folder": cfg.data, "sequences": int(len(data)), "train_sequences": int(len(train_rows)),
                 "windows": int(len(sampler.valid)), "frames": int(data.found.size),
                 "meta": [_read_meta(f) for f in cfg.data.split(",")]},
        "run": {"seconds": round(time.time() - t_start, 1), "processes": world, "device": str(device),
                "hardware": _hardware(device), "torch": torch.__version__},
    }
    if rank == 0:
        out_dir = Path(cfg.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, out_dir / "ckpt.pt")
        (out_dir / "summary.json").write_text(json.dumps({k: ckpt[k] for k in ("train_config", "final", "data", "run")}, indent=2))
        if cfg.export:
            from blendshape_model.export import export_onnx
            export_onnx(raw.cpu().eval(), out_dir / "blendshapes.onnx", metadata={"train": ckpt["run"], "final": ckpt["final"]})
    if ddp:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return ckpt


@torch.no_grad()
def validate(model, batch: dict, cfg: TrainConfig, device) -> dict[str, float]:
    model.eval()
    out = losses(model, {k: v.to(device) for k, v in batch.items()}, cfg)
    return {"val_" + k: float(v) for k, v in out.items()}


def _read_meta(folder: str) -> dict:
    p = Path(folder) / "meta.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv=None) -> None:
    cfg = parse_dataclass_args(TrainConfig, argv, "Train the blendshape network on a cached synthetic set.")
    ckpt = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"final": ckpt["final"], "run": ckpt["run"]}, indent=2))


if __name__ == "__main__":
    main()
