"""Headset mode's training: occluded renders become lower-face crops with the right labels, and a smoke
run exports an ONNX model that matches PyTorch and that the runtime estimator loads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avatar_bridge.arkit import INDEX  # noqa: E402
from avatar_bridge.estimators.lower_face import LowerFaceEstimator  # noqa: E402
from avatar_bridge.tracking.lower_face import CROP_SIZE  # noqa: E402
from helpers import ROOT  # noqa: E402
from training.headset_data import FLIP_CHECK_PAIRS, LOWER_FACE_SHAPES, build_crops, paint_headset  # noqa: E402
from training.train_headset import FLIP, HeadsetTrainConfig, export, predict, train  # noqa: E402


def test_the_lower_face_shapes_are_everything_from_the_nose_base_down():
    assert "jawOpen" in LOWER_FACE_SHAPES and "mouthSmileLeft" in LOWER_FACE_SHAPES and "cheekPuff" in LOWER_FACE_SHAPES
    assert not [n for n in LOWER_FACE_SHAPES if n.startswith(("eye", "brow"))]
    for a, b in FLIP_CHECK_PAIRS:     # a mirrored crop swaps the sides of its labels
        assert LOWER_FACE_SHAPES[FLIP[LOWER_FACE_SHAPES.index(a)]] == b


def test_the_painted_headset_covers_the_eyes_and_leaves_the_mouth():
    from training.render import Renderer, default_params
    with Renderer(192, 192) as r:
        res = r.render(default_params(blendshapes={"jawOpen": 0.5}))
    covered = paint_headset(res.image, res.landmarks68, np.random.default_rng(0))
    eyes = res.landmarks68[36:48].astype(int)
    mouth = res.landmarks68[48:68].astype(int)
    changed = np.abs(covered.astype(int) - res.image.astype(int)).sum(2) > 30
    assert changed[eyes[:, 1], eyes[:, 0]].all()
    assert not changed[mouth[:, 1], mouth[:, 0]].any()


def test_a_smoke_run_exports_a_model_that_matches_pytorch_and_the_estimator_loads(tmp_path):
    data = build_crops(10, seed=3, progress=False)
    assert data["crops"].shape == (20, CROP_SIZE, CROP_SIZE, 3) and data["targets"].shape == (20, len(LOWER_FACE_SHAPES))
    model, info = train(data, HeadsetTrainConfig(epochs=1, batch=8, width=8, val_fraction=0.0), progress=False)
    path = export(model, tmp_path / "lower.onnx", {"smoke": True})
    est = LowerFaceEstimator.from_path(str(path))
    assert [int(i) for i in est.columns] == [INDEX[n] for n in LOWER_FACE_SHAPES]
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = data["crops"][:4].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(session.run(None, {"crop": x})[0], predict(model, data["crops"][:4]), atol=1e-5)


def test_the_training_command_has_a_smoke_mode(tmp_path):
    out = tmp_path / "smoke.onnx"
    proc = subprocess.run([sys.executable, "-m", "training.train_headset", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000 and '"epoch": 2' in proc.stdout
