"""Training: a tiny run lowers the loss, the trainer runs under torchrun with two gloo processes,
and flipped sequences carry mirrored labels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avatar_bridge.arkit import INDEX, MIRROR_PERMUTATION  # noqa: E402
from blendshape_model.features import EYE_PATCH, FEATURE_DIM  # noqa: E402
from training.dataset import SequenceSet  # noqa: E402
from avatar_bridge.mirror import mirror_labels  # noqa: E402
from training.train import TrainConfig, WindowSampler, losses, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tiny_set(sequences: int = 12, frames: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs whose targets are a fixed function of the landmark features (learnable)."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 1, (sequences, frames, FEATURE_DIM)).astype(np.float32)
    w = rng.normal(0, 0.05, (FEATURE_DIM, 52)).astype(np.float32)
    bs = 1 / (1 + np.exp(-(feats @ w)))
    return dict(
        crop=rng.integers(0, 256, (sequences, frames, 96, 96, 3), dtype=np.uint8),
        eyes=rng.integers(0, 256, (sequences, frames, 2, *EYE_PATCH, 3), dtype=np.uint8),
        landmarks=rng.uniform(0.3, 0.7, (sequences, frames, 478, 3)).astype(np.float32),
        crop_transform=np.tile(np.array([[0.5, 0, 0], [0, 0.5, 0]], np.float32), (sequences, frames, 1, 1)),
        found=np.ones((sequences, frames), bool), pnp_rot=np.tile(np.eye(3, dtype=np.float32), (sequences, frames, 1, 1)),
        blendshapes=bs.astype(np.float32), gaze=(feats[..., :4] * 0.1).astype(np.float32),
        head_quat=np.tile(np.array([0, 0, 0, 1], np.float32), (sequences, frames, 1)),
        head_pos=np.zeros((sequences, frames, 3), np.float32), seq_id=np.arange(sequences), flipped=np.zeros(sequences, bool),
        features=feats)


def as_sequence_set(a: dict) -> SequenceSet:
    return SequenceSet(crops=a["crop"], features=a["features"], eyes=a["eyes"], found=a["found"], blendshapes=a["blendshapes"],
                       gaze=a["gaze"], head_quat=a["head_quat"], pnp_rot=a["pnp_rot"], landmarks=a["landmarks"],
                       crop_transform=a["crop_transform"], image_size=(192, 192), seq_id=a["seq_id"], flipped=a["flipped"])


def test_a_tiny_training_run_lowers_the_loss(tmp_path):
    data = as_sequence_set(tiny_set())
    cfg = TrainConfig(out=str(tmp_path), model="bsnet_tiny", steps=60, batch=8, window=6, lr=3e-3, warmup=5,
                      val_fraction=0.0, export=False, threads=2, log_every=1)
    torch.manual_seed(0)
    fixed = WindowSampler(data, np.arange(len(data)), 6, seed=99).batch(16)
    from blendshape_model.model import create_model
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        before = float(losses(create_model("bsnet_tiny").eval(), fixed, cfg)["loss"])
    ckpt = train(cfg, data=data, progress=False)
    from blendshape_model.model import model_from_checkpoint
    with torch.no_grad():
        after = float(losses(model_from_checkpoint(ckpt), fixed, cfg)["loss"])
    assert after < 0.7 * before, (before, after)
    assert (tmp_path / "ckpt.pt").exists()


def test_trainer_runs_two_gloo_processes_under_torchrun(tmp_path):
    a = tiny_set(sequences=8, frames=8)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    np.savez(data_dir / "chunk_00000.npz", image_size=np.array([192, 192]),
             **{k: v for k, v in a.items() if k not in ("features", "eyes")})
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--data", str(data_dir), "--out", str(out), "--model", "bsnet_tiny",
           "--steps", "4", "--batch", "4", "--window", "4", "--warmup", "1", "--no-export", "--threads", "1",
           "--val-fraction", "0"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    assert ckpt["run"]["processes"] == 2
    assert np.isfinite(ckpt["final"]["loss"])


def test_flipped_labels_swap_every_left_right_pair():
    bs = np.zeros(52, np.float32)
    bs[INDEX["eyeBlinkLeft"]], bs[INDEX["mouthSmileRight"]], bs[INDEX["jawOpen"]] = 1.0, 0.7, 0.4
    gaze = np.array([0.2, 0.1, 0.3, -0.1], np.float32)
    quat = np.array([0.1, 0.2, 0.3, 0.9], np.float32)
    m_bs, m_gaze, m_q, m_p = mirror_labels(bs, gaze, quat, np.array([0.05, 0.0, -0.5], np.float32))
    assert m_bs[INDEX["eyeBlinkRight"]] == 1.0 and m_bs[INDEX["eyeBlinkLeft"]] == 0.0
    assert m_bs[INDEX["mouthSmileLeft"]] == pytest.approx(0.7) and m_bs[INDEX["jawOpen"]] == pytest.approx(0.4)
    np.testing.assert_allclose(m_gaze, [-0.3, -0.1, -0.2, 0.1])
    np.testing.assert_allclose(m_q, [0.1, -0.2, -0.3, 0.9])
    np.testing.assert_allclose(m_p, [-0.05, 0.0, -0.5])
    assert sorted(MIRROR_PERMUTATION) == list(range(52))
