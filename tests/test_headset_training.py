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
from training.headset_data import (FLIP_CHECK_PAIRS, KEYPOINT_FLIP, KEYPOINTS, LOWER_FACE_SHAPES, build_crops,  # noqa: E402
                                   paint_headset, render_frames)
from training.train_headset import FLIP, Crops, HeadsetTrainConfig, export, predict, train  # noqa: E402


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


def test_the_keypoints_are_where_the_lips_are_in_the_crop_and_mirror_onto_their_twins():
    points = list(KEYPOINTS)
    assert KEYPOINT_FLIP[points.index(48)] == points.index(54) and KEYPOINT_FLIP[points.index(51)] == points.index(51)
    assert KEYPOINT_FLIP[points.index(0)] == points.index(16) and (KEYPOINT_FLIP[KEYPOINT_FLIP] == np.arange(len(points))).all()
    data = build_crops(6, seed=11, progress=False)
    lips = data["keypoints"][:, points.index(48):points.index(67) + 1]
    inside = ((lips > 0) & (lips < 1)).all(2).mean(1)
    assert (inside >= 0.9).all(), inside                   # the lips land inside their crop (jitter may clip a corner)
    # ... and where the crop shows them: a dot painted on the upper lip's centre is found at its keypoint.
    from avatar_bridge.tracking.lower_face import Box, crop_box
    from training.headset_data import crop_keypoints
    l68 = np.zeros((68, 2), np.float32)
    l68[51] = (131.0, 97.0)
    image = np.zeros((192, 192, 3), np.uint8)
    image[95:100, 129:134] = 255
    box = Box(90.0, 60.0, 80.0, 96.0)
    crop = crop_box(image, box)
    y, x = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
    kp = crop_keypoints(l68, box)[points.index(51)] * CROP_SIZE
    assert abs(kp[0] - x) <= 1.5 and abs(kp[1] - y) <= 1.5, (kp, x, y)


def test_the_keypoint_head_learns_to_place_the_points_in_a_smoke_run():
    data = build_crops(16, seed=4, progress=False)
    model, info = train(data, HeadsetTrainConfig(epochs=12, batch=8, width=8, val_fraction=0.0, keypoint_weight=1.0),
                        progress=False)
    kp = [h["keypoint_loss"] for h in info["history"]]
    # Each coordinate's error is scaled by its spread; the untrained head starts far off.
    assert kp[-1] < kp[0] / 3, kp
    # Without the keypoint head's loss its output stays untrained: far worse than the trained head.
    _, info0 = train(data, HeadsetTrainConfig(epochs=12, batch=8, width=8, val_fraction=0.0, keypoint_weight=0.0),
                     progress=False)
    assert info0["history"][-1]["keypoint_loss"] > 2 * kp[-1]


def test_whole_frames_carry_the_face_mesh_box_and_crops_are_cut_anew_each_draw(tmp_path):
    frames = render_frames(8, seed=2, progress=False)
    assert frames["images"].shape[0] == 8 and frames["mesh_boxes"].shape == (8, 4)
    webcam = frames["views"] != 2
    assert np.isnan(frames["mesh_boxes"][~webcam]).all()       # a mouth camera's frame never gets a mesh
    assert np.isfinite(frames["mesh_boxes"][webcam, 0]).mean() >= 0.5
    source = Crops(frames, np.random.default_rng(0))
    a, ya, _ = source.get(np.arange(8))
    b, yb, _ = source.get(np.arange(8))
    assert a.shape == (8, CROP_SIZE, CROP_SIZE, 3) and (ya == yb).all() and not (a == b).all()
    fixed1, _, k1 = source.get(np.arange(8), fixed=True)
    fixed2, _, k2 = source.get(np.arange(8), fixed=True)
    assert (fixed1 == fixed2).all() and (k1 == k2).all()       # validation reads the same crops every epoch
    # The face-mesh readout fits on the frames' meshes, and the estimator's loader takes what it writes.
    from avatar_bridge.estimators.lower_face import MeshReadout
    from training.train_headset import fit_mesh_readout
    assert frames["meshes"].shape == (8, 478, 3) and np.isnan(frames["meshes"][~webcam]).all()
    arrays, info = fit_mesh_readout(frames, val_fraction=0.0)
    path = tmp_path / "mesh.npz"
    np.savez(path, **arrays)
    readout = MeshReadout(path)
    fitted = np.flatnonzero(np.isfinite(frames["meshes"][:, 0, 0]))
    got = np.stack([readout.read(frames["meshes"][i]) for i in fitted])
    truth = frames["blendshapes"][fitted][:, readout.columns]
    # 5-7 frames, 265 features: the ridge all but interpolates its own training frames
    assert np.abs(got - np.clip(truth, 0, 1)).mean() < 0.05, np.abs(got - truth).mean()


def test_the_ceiling_benchmark_refuses_files_that_are_not_frames(tmp_path):
    bad = tmp_path / "crops.npz"
    np.savez(bad, crops=np.zeros((2, 4, 4, 3)))
    proc = subprocess.run([sys.executable, "benchmarks/headset_ceiling.py", "--data", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not a headset_data.py frames file" in proc.stderr and "Traceback" not in proc.stderr


def test_the_point_network_learns_to_place_the_lower_face_points_and_exports_what_the_estimator_loads(tmp_path):
    from avatar_bridge.estimators.lower_face import LowerPointsNetwork, PointReadout
    from training.train_headset import fit_readout
    from training.train_lower_points import (PointTrainConfig, export, point_error, predict_points, readout_rows,
                                             train_points)

    frames = render_frames(12, seed=8, progress=False)
    model, info = train_points(frames, PointTrainConfig(epochs=10, batch=4, width=8), np.arange(12), np.arange(12),
                               progress=False)
    errors = [h["val_median_err_jaw"] for h in info["history"]]
    assert errors[-1] < errors[0] / 2, errors          # the untrained net's points are far off; training halves that
    path = export(model, tmp_path / "points.onnx", {"smoke": True})
    net = LowerPointsNetwork(path, mirror_average=False)
    crops, _, kp = Crops(frames, np.random.default_rng(0)).get(np.arange(4), fixed=True)
    box = (10.0, 20.0, 80.0, 60.0)
    got = np.stack([net.points(c, box) for c in crops])
    np.testing.assert_allclose(got, predict_points(model, crops) * box[2:] + box[:2], atol=1e-3)
    assert point_error(predict_points(model, crops), kp) == pytest.approx(point_error((got - box[:2]) / box[2:], kp),
                                                                         abs=1e-4)
    # The readout fits on the network's own points and the estimator's loader takes what is written.
    arrays, _ = fit_readout(*readout_rows(model, frames, np.arange(12), 2, seed=0), val_fraction=0.0)
    np.savez(tmp_path / "points.npz", **arrays, points=np.asarray(KEYPOINTS, np.int32))
    readout = PointReadout(tmp_path / "points.npz")
    assert readout.read(got[0]).shape == (len(LOWER_FACE_SHAPES),)


def test_a_mirrored_crop_gets_the_mirrored_points():
    # With mirror averaging the network's output is exactly symmetric: a face and its mirror image
    # get mirror-image points, so a left smile and a right smile read alike.
    from avatar_bridge.estimators.lower_face import LowerPointsNetwork
    from training.train_lower_points import LowerPointsNet, export

    model = LowerPointsNet(8)
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        net = LowerPointsNetwork(export(model.eval(), Path(d) / "p.onnx", {}))
        crop = np.random.default_rng(1).integers(0, 255, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        box = (0.0, 0.0, 100.0, 100.0)
        a, b = net.points(crop, box), net.points(crop[:, ::-1], box)
    np.testing.assert_allclose(b, a[KEYPOINT_FLIP] * (-1, 1) + (100, 0), atol=1e-3)
    assert np.abs(a[0] - a[16]).max() > 1e-3        # and not because every point sits on the midline


def test_the_point_features_are_the_same_for_a_face_rolled_bigger_and_moved():
    from avatar_bridge.estimators.lower_face import point_features

    rng = np.random.default_rng(3)
    pts = rng.uniform(50, 150, (4, len(KEYPOINTS), 2))
    a = np.radians(20.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    assert np.allclose(point_features(pts), point_features((pts @ rot.T) * 1.7 + [30.0, -12.0]))
    assert not np.allclose(point_features(pts[:1]), point_features(pts[1:2]))


def test_the_point_training_command_has_a_smoke_mode_and_refuses_files_that_are_not_frames(tmp_path):
    out, readout = tmp_path / "p.onnx", tmp_path / "p.npz"
    cmd = [sys.executable, "-m", "training.train_lower_points", "--out", str(out), "--readout-out", str(readout)]
    proc = subprocess.run(cmd + ["--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000 and readout.exists() and '"epoch": 2' in proc.stdout
    bad = tmp_path / "crops.npz"
    np.savez(bad, crops=np.zeros((2, 4, 4, 3)))
    proc = subprocess.run(cmd + ["--data", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "python -m training.headset_data" in proc.stderr and "Traceback" not in proc.stderr
