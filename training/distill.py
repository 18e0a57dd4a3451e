"""Distillation in landmark space: a small network of ours learns MediaPipe's real-face blendshape
reading (training/teacher.py) from a large stream of landmark sets.

    python -m training.distill --data cache/synth/distill --out runs/distill --samples 200000

Landmark sets come from our own tracker on rendered faces (``training.generate`` caches them) and are
multiplied by augmentation in landmark space, which needs no rendering: per region (spatial clusters
of the 146 points the teacher reads) either a deformation along that region's main modes of tracked
variation or the same region taken from another face (mixing), then a similarity jitter (roll, size,
position) and pixel noise. The teacher labels every augmented set (well under a millisecond each).
The student reads the same 146 points in pixels, so it can replace the teacher at run time; it is an
MLP whose first step (centre and scale) is part of the exported graph.

On the render frames themselves the exact labels are also known; ``fit_output_gain`` uses them to
fit, per shape, the gain that maps the teacher's reading onto the true coefficient where the two
agree (r >= 0.6), so shapes the teacher under-reads (a closed eye reads ~0.6) reach 1. It is stored
in the ONNX graph as a final scale. Nothing of the teacher is stored in the student.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from training.teacher import TEACHER_DEAD, TEACHER_LANDMARKS, Teacher

N_POINTS = len(TEACHER_LANDMARKS)
CONTRACT = "teacher146-px-v1"   # input: the 146 teacher landmarks (x, y) in image pixels, ONNX input "points"


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run."""

    data: str = "cache/synth/distill"   # cached tracked renders (training.generate), comma-separated
    out: str = "runs/distill"           # checkpoint, ONNX and log
    samples: int = 200_000              # augmented landmark sets labelled by the teacher
    keep_plain: float = 0.2             # share of samples that are tracked sets with only a similarity jitter
    regions: int = 8                    # spatial clusters of the 146 points
    modes: int = 6                      # main modes of variation per region
    mode_scale: float = 1.2             # deformation: standard deviations per mode
    mix_prob: float = 0.3               # per region: take it from another face
    deform_prob: float = 0.5            # per region: deform it along its modes
    roll_deg: float = 20.0              # similarity jitter
    noise_px: float = 0.4               # at a 200-pixel face
    hidden: int = 384
    epochs: int = 30
    batch: int = 512
    lr: float = 2e-3
    seed: int = 0
    val_share: float = 0.05
    labels: str = ""                    # .npz to keep the teacher's labels in and reuse (same data/sampling)


# --- landmark sets ------------------------------------------------------------------------------


def load_landmark_sets(folders: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 146, 2) pixels, (N, 52) true coefficients and (N,) sequence id of every tracked frame."""
    pts, truth, seq = [], [], []
    n_chunk = 0
    for folder in folders.split(","):
        chunks = sorted(Path(folder).glob("chunk_*.npz"))
        if not chunks:
            raise SystemExit(f"no chunk_*.npz in {folder}; make one with python -m training.generate --out {folder}")
        for path in chunks:
            with np.load(path) as d:
                size = d["image_size"].astype(np.float32)   # (w, h)
                found = d["found"]
                lms = d["landmarks"][found][:, TEACHER_LANDMARKS, :2] * size
                pts.append(lms.astype(np.float32))
                truth.append(d["blendshapes"][found])
                ids = np.broadcast_to((d["seq_id"] * 2 + d["flipped"])[:, None], found.shape)[found]
                seq.append(ids + n_chunk * 10_000)
                n_chunk += 1
    return np.concatenate(pts), np.concatenate(truth), np.concatenate(seq)


def normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and RMS scale of each set: (N, 146, 2) -> normalised sets, centres (N, 2), scales (N,)."""
    c = p.mean(1)
    s = np.sqrt(((p - c[:, None]) ** 2).sum(-1).mean(1))
    return (p - c[:, None]) / s[:, None, None], c, s


def _align_rotation(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Rotation (N, 2, 2) that turns each normalised set onto ``ref`` (orthogonal Procrustes)."""
    m = np.einsum("npi,pj->nij", a, ref)
    u, _, vt = np.linalg.svd(m)
    bad = np.linalg.det(u @ vt) < 0   # a reflection is no head pose
    u[bad, :, -1] *= -1
    return u @ vt


class LandmarkAugmenter:
    """New plausible landmark sets from tracked ones (see the module docstring)."""

    def __init__(self, base: np.ndarray, config: DistillConfig, rng: np.random.Generator) -> None:
        self.config, self.rng = config, rng
        norm, self.centre, self.scale = normalise(base)
        ref = norm.mean(0)
        for _ in range(2):   # align to the mean shape, then to the mean of the aligned shapes
            self.rot = _align_rotation(norm, ref)
            aligned = np.einsum("npi,nij->npj", norm, self.rot)
            ref = aligned.mean(0)
        self.aligned, self.mean = aligned, ref
        self.regions = self._clusters(ref, config.regions)
        # Per region: its main modes of tracked variation (PCA of the aligned residuals).
        self.modes = []
        for idx in self.regions:
            x = (aligned[:, idx] - ref[idx]).reshape(len(aligned), -1)
            _, sv, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
            k = min(config.modes, len(sv))
            self.modes.append((vt[:k], sv[:k] / np.sqrt(len(x))))

    def _clusters(self, ref: np.ndarray, k: int) -> list[np.ndarray]:
        centres = ref[self.rng.choice(len(ref), k, replace=False)]
        for _ in range(30):
            label = np.argmin(((ref[:, None] - centres[None]) ** 2).sum(-1), 1)
            centres = np.stack([ref[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
        return [np.flatnonzero(label == j) for j in range(k) if (label == j).any()]

    def sample(self, n: int) -> np.ndarray:
        """(n, 146, 2) pixel landmark sets."""
        c, rng = self.config, self.rng
        base = rng.integers(0, len(self.aligned), n)
        out = self.aligned[base].copy()
        plain = rng.random(n) < c.keep_plain
        for idx, (vt, sd) in zip(self.regions, self.modes):
            mix = (rng.random(n) < c.mix_prob) & ~plain
            other = rng.integers(0, len(self.aligned), n)
            src = self.aligned[other][:, idx]
            src = src + (out[:, idx].mean(1) - src.mean(1))[:, None]   # keep the region where it was
            out[:, idx] = np.where(mix[:, None, None], src, out[:, idx])
            deform = (rng.random(n) < c.deform_prob) & ~plain
            coef = rng.normal(0, c.mode_scale, (n, len(sd))) * sd
            out[:, idx] += np.where(deform[:, None, None], (coef @ vt).reshape(n, len(idx), 2), 0.0)
        # Back into a picture: the base frame's own roll and size, jittered, at a random face size.
        roll = np.radians(rng.uniform(-c.roll_deg, c.roll_deg, n))
        jitter = np.stack([np.stack([np.cos(roll), -np.sin(roll)], -1), np.stack([np.sin(roll), np.cos(roll)], -1)], -2)
        rot = np.einsum("nij,njk->nik", np.transpose(self.rot[base], (0, 2, 1)), jitter)
        face_px = rng.uniform(40, 220, n)    # RMS radius of the 146 points, pixels (faces ~ 120-650 px wide)
        centre = rng.uniform(0.3, 0.7, (n, 2)) * 640
        p = np.einsum("npi,nij->npj", out, rot) * face_px[:, None, None] + centre[:, None]
        p += rng.normal(0, 1, p.shape) * (c.noise_px * face_px / 70.0)[:, None, None]
        return p.astype(np.float32)


def teacher_labels(teacher: Teacher, pts: np.ndarray, progress: bool = True) -> np.ndarray:
    from tqdm import tqdm

    full = np.zeros((len(pts), 478, 2), np.float32)
    out = np.empty((len(pts), len(ARKIT_BLENDSHAPES)), np.float32)
    step = 4096
    for i in tqdm(range(0, len(pts), step), desc="teacher", disable=not progress, unit_scale=step):
        full[i:i + step][:, TEACHER_LANDMARKS] = pts[i:i + step]
        out[i:i + step] = teacher(full[i:i + step])
    return out


# --- the student ---------------------------------------------------------------------------------


def build_student(hidden: int):
    import torch
    from torch import nn

    class LandmarkStudent(nn.Module):
        """(N, 146, 2) pixels -> (N, 52) in 0..1: centre and scale, then an MLP, then a per-shape gain."""

        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(N_POINTS * 2, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, len(ARKIT_BLENDSHAPES)))
            self.register_buffer("gain", torch.ones(len(ARKIT_BLENDSHAPES)))

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            c = points.mean(1, keepdim=True)
            x = points - c
            s = torch.sqrt((x * x).sum(-1).mean(1, keepdim=True)).unsqueeze(-1)
            y = torch.sigmoid(self.mlp((x / s).flatten(1)))
            return torch.clamp(y * self.gain, 0.0, 1.0)

        def raw(self, points: torch.Tensor) -> torch.Tensor:
            g, self.gain = self.gain, torch.ones_like(self.gain)
            try:
                return self.forward(points)
            finally:
                self.gain = g

    return LandmarkStudent()


def fit_output_gain(student_out: np.ndarray, truth: np.ndarray, min_r: float = 0.6) -> tuple[np.ndarray, dict]:
    """Per shape, the gain (1 to 2.5) that best maps the student's reading onto the true coefficient
    on render frames, for shapes where the two agree (r >= min_r) and the truth moves; else 1."""
    gain = np.ones(truth.shape[1], np.float32)
    report = {}
    for j, name in enumerate(ARKIT_BLENDSHAPES):
        x, y = student_out[:, j], truth[:, j]
        if y.std() < 0.05 or x.std() < 0.02:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if r < min_r:
            continue
        g = float(np.clip(np.dot(x, y) / max(np.dot(x, x), 1e-9), 1.0, 2.5))
        gain[j] = g
        report[name] = {"r": round(r, 3), "gain": round(g, 3)}
    return gain, report


def _labelled_sets(config: DistillConfig, base: np.ndarray, is_val: np.ndarray, rng: np.random.Generator,
                   progress: bool) -> tuple[np.ndarray, ...]:
    """Training and validation sets with the teacher's labels; from ``config.labels`` when it holds
    the labels of the same data and sampling (labelling is most of a run's time on 2 cores)."""
    key = json.dumps({k: v for k, v in asdict(config).items()
                      if k not in ("hidden", "epochs", "batch", "lr", "out", "labels")}, sort_keys=True)
    path = Path(config.labels) if config.labels else None
    if path is not None and path.exists():
        with np.load(path) as d:
            if str(d["key"]) == key:
                return d["x"], d["y"], d["xv"], d["yv"]
    aug = LandmarkAugmenter(base[~is_val], config, rng)
    teacher = Teacher()
    x = np.concatenate([base[~is_val], aug.sample(config.samples)])
    y = teacher_labels(teacher, x, progress)
    xv, yv = base[is_val], teacher_labels(teacher, base[is_val], progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, key=key, x=x, y=y, xv=xv, yv=yv)
    return x, y, xv, yv


def train(config: DistillConfig, progress: bool = True) -> dict:
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base, truth, seq = load_landmark_sets(config.data)
    # Hold out whole sequences so validation is not a neighbouring frame of a training one.
    val_seq = np.unique(seq)[rng.random(len(np.unique(seq))) < config.val_share]
    is_val = np.isin(seq, val_seq)
    x, y, xv, yv = _labelled_sets(config, base, is_val, rng, progress)
    t_label = time.time() - t0

    student = build_student(config.hidden)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * (len(x) // config.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.05)
    mask = torch.ones(len(ARKIT_BLENDSHAPES))
    mask[[ARKIT_BLENDSHAPES.index(n) for n in TEACHER_DEAD]] = 0.0
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xvt, yvt = torch.from_numpy(xv), torch.from_numpy(yv)
    history = []
    from tqdm import tqdm
    bar = tqdm(range(config.epochs), desc="student", disable=not progress)
    for epoch in bar:
        student.train()
        perm = torch.randperm(len(xt))
        total = 0.0
        for i in range(0, len(perm) - config.batch + 1, config.batch):
            b = perm[i:i + config.batch]
            loss = (((student.raw(xt[b]) - yt[b]) ** 2) * mask).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        student.eval()
        with torch.no_grad():
            val = float(((((student.raw(xvt) - yvt) ** 2) * mask).mean()))
        history.append({"epoch": epoch, "train_mse": total / len(perm), "val_mse": val})
        bar.set_postfix(train=f"{total / len(perm):.5f}", val=f"{val:.5f}")
    with torch.no_grad():
        raw_val = student.raw(xvt).numpy()
        raw_train = student.raw(torch.from_numpy(base[~is_val])).numpy()
    gain, gain_report = fit_output_gain(raw_train, truth[~is_val])
    student.gain = torch.from_numpy(gain)
    per_shape_r = {}
    for j, name in enumerate(ARKIT_BLENDSHAPES):
        if yv[:, j].std() > 0.02:
            per_shape_r[name] = round(float(np.corrcoef(raw_val[:, j], yv[:, j])[0, 1]), 3)
    report = {"config": asdict(config), "tracked_sets": int(len(base)), "val_sets": int(is_val.sum()),
              "samples": int(len(x)), "label_seconds": round(t_label, 1),
              "train_seconds": round(time.time() - t0 - t_label, 1), "history": history,
              "val_r_with_teacher": per_shape_r, "gain": gain_report}
    torch.save({"state_dict": student.state_dict(), "config": asdict(config), "contract": CONTRACT}, out / "student.pt")
    export_onnx(student, out / "landmarks.onnx", config)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def export_onnx(student, path: Path, config: DistillConfig) -> None:
    import onnx
    import torch

    student.eval()
    dummy = torch.rand(1, N_POINTS, 2) * 300
    torch.onnx.export(student, dummy, str(path), input_names=["points"], output_names=["blendshapes"],
                      dynamic_axes={"points": {0: "n"}, "blendshapes": {0: "n"}}, opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    meta = {"contract": CONTRACT, "landmarks": json.dumps(TEACHER_LANDMARKS.tolist()),
            "outputs": json.dumps(list(ARKIT_BLENDSHAPES)), "trained_with": json.dumps(asdict(config)),
            "teacher": "MediaPipe face_blendshapes (Apache-2.0), used as a teacher only"}
    for k, v in meta.items():
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, k: v})
    onnx.save(model, str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(DistillConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = p.parse_args(argv)
    config = DistillConfig(**{f.name: getattr(a, f.name) for f in fields(DistillConfig)})
    report = train(config)
    print(json.dumps({k: report[k] for k in ("tracked_sets", "samples", "label_seconds", "train_seconds")}
                     | {"val_mse": report["history"][-1]["val_mse"], "gain": report["gain"]}))
    print(f"wrote {config.out}/landmarks.onnx; evaluate it with: python -m training.evaluate_real "
          f"--estimators landmarks,geometry --model landmarks={config.out}/landmarks.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
