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
from avatar_bridge.signal.mirror import mirror_labels  # noqa: E402
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


def test_crop_jitter_moves_the_crop_frame_landmarks_with_the_crop():
    """Bright spots drawn at three landmarks are found, after the jitter, where the jittered
    landmark features say they are; the features that do not depend on the crop are untouched."""
    from training.train import crop_jitter
    s = 96
    spots = np.array([[30.0, 35.0], [66.0, 40.0], [48.0, 72.0]])          # crop pixels
    yy, xx = np.mgrid[0:s, 0:s]
    crop = np.zeros((s, s, 3), np.float32)
    for x, y in spots:
        crop += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2))[..., None]
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (1, 4, FEATURE_DIM)).astype(np.float32)
    features[..., :9] = np.concatenate([spots / s * 2 - 1, np.zeros((3, 1))], 1).reshape(-1)   # crop units
    cfg = TrainConfig(jitter_deg=8.0, jitter_scale=0.08, jitter_px=4.0)
    crops = torch.from_numpy(np.broadcast_to(crop, (1, 4, s, s, 3)).copy())
    out_crop, out_feat = crop_jitter(crops, torch.from_numpy(features), cfg, torch.Generator().manual_seed(3))
    out_crop, out_feat = out_crop.numpy(), out_feat.numpy()
    assert not np.allclose(out_feat[..., :9], features[..., :9], atol=0.02)          # it did move them
    np.testing.assert_array_equal(out_feat[..., 478 * 3:], features[..., 478 * 3:])
    for t in range(4):
        moved = (out_feat[0, t, :9].reshape(3, 3)[:, :2] + 1) / 2 * s             # back to crop pixels
        img = out_crop[0, t, ..., 0].astype(float)
        for x, y in moved:
            win = (slice(int(y) - 4, int(y) + 5), slice(int(x) - 4, int(x) + 5))
            w = img[win]
            cy, cx = (w * yy[win]).sum() / w.sum(), (w * xx[win]).sum() / w.sum()
            assert abs(cx - x) < 0.6 and abs(cy - y) < 0.6, (t, (x, y), (cx, cy))


def test_several_cached_sets_load_as_one_with_distinct_sequence_ids(tmp_path):
    from training.dataset import load_cache
    folders = []
    for name, n in (("a", 3), ("b", 2)):
        a = tiny_set(sequences=n, frames=4)
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "chunk_00000.npz", image_size=np.array([192, 192]),
                 **{k: v for k, v in a.items() if k not in ("features", "eyes")})
        folders.append(str(tmp_path / name))
    both = load_cache(",".join(folders))
    assert len(both) == 5
    assert sorted(both.seq_id.tolist()) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(both.blendshapes[3:], tiny_set(sequences=2, frames=4)["blendshapes"])
    with pytest.raises(FileNotFoundError, match="training.generate"):
        load_cache(folders[0] + "," + str(tmp_path / "missing"))
    longer = tiny_set(sequences=1, frames=8)
    (tmp_path / "c").mkdir()
    np.savez(tmp_path / "c" / "chunk_00000.npz", image_size=np.array([192, 192]),
             **{k: v for k, v in longer.items() if k not in ("features", "eyes")})
    with pytest.raises(ValueError, match="same --frames"):
        load_cache(folders[0] + "," + str(tmp_path / "c"))


def test_fine_tuning_starts_from_the_given_checkpoint(tmp_path):
    data = as_sequence_set(tiny_set(sequences=6, frames=8))
    base = dict(model="bsnet_tiny", batch=4, window=4, warmup=1, val_fraction=0.0, export=False, threads=2)
    first = train(TrainConfig(out=str(tmp_path / "a"), steps=5, **base), data=data, progress=False)
    # lr 0: nothing learns, so the weights are the checkpoint's (the standardisation too, not recomputed)
    again = train(TrainConfig(out=str(tmp_path / "b"), steps=2, lr=0.0, init=str(tmp_path / "a" / "ckpt.pt"), **base),
                  data=as_sequence_set(tiny_set(sequences=6, frames=8, seed=1)), progress=False)
    for key in ("head.weight", "landmarks.0.weight", "feat_mean", "feat_std"):
        torch.testing.assert_close(again["model"][key], first["model"][key])
    with pytest.raises(ValueError, match="bsnet_tiny"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, init=str(tmp_path / "a" / "ckpt.pt"),
                          **{**base, "model": "bsnet_small"}), data=data, progress=False)


def test_training_commands_take_their_help_from_the_config_comments(capsys):
    from training.dataclass_cli import parse_dataclass_args
    with pytest.raises(SystemExit):
        parse_dataclass_args(TrainConfig, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--init INIT a checkpoint to start from" in out and "(default: bsnet_small)" in out
    cfg = parse_dataclass_args(TrainConfig, ["--steps", "7", "--no-export", "--data", "a,b"])
    assert cfg.steps == 7 and cfg.export is False and cfg.data == "a,b"
