"""The blendshape network: every variant runs and exports, ONNX matches PyTorch, the runner's
carried state behaves, and a tiny training run learns."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from blendshape_model.export import export_onnx  # noqa: E402
from blendshape_model.features import EYE_PATCH, FEATURE_DIM, crop_points, matrix_to_quat, rotvec_to_matrix  # noqa: E402
from blendshape_model.model import create_model, list_models  # noqa: E402
from blendshape_model.runner import BlendshapeRunner  # noqa: E402


def _inputs(t: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (t, 96, 96, 3), dtype=np.uint8),
            rng.integers(0, 256, (t, 2, *EYE_PATCH, 3), dtype=np.uint8),
            rng.normal(0, 0.5, (t, FEATURE_DIM)).astype(np.float32))


@pytest.mark.parametrize("name", list_models())
def test_every_variant_exports_and_onnx_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    crops, eyes, feats = _inputs(6)
    with torch.no_grad():
        bs, gaze, pose, h = model(torch.from_numpy(crops)[None], torch.from_numpy(eyes)[None], torch.from_numpy(feats)[None],
                                  model.initial_state(1))
    runner = BlendshapeRunner(export_onnx(model, tmp_path / f"{name}.onnx"))
    out, h_onnx = runner.run_sequence(crops, eyes, feats)
    assert out.blendshapes.shape == (6, 52) and out.gaze.shape == (6, 4) and out.pose_delta.shape == (6, 3)
    np.testing.assert_allclose(out.blendshapes, bs[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out.gaze, gaze[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out.pose_delta, pose[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(h_onnx, h.numpy(), atol=1e-4)
    assert ((out.blendshapes >= 0) & (out.blendshapes <= 1)).all()


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> BlendshapeRunner:
    torch.manual_seed(1)
    return BlendshapeRunner(export_onnx(create_model("bsnet_tiny").eval(), tmp_path_factory.mktemp("m") / "m.onnx"))


def test_stepping_the_runner_frame_by_frame_equals_the_whole_sequence(runner):
    crops, eyes, feats = _inputs(8, seed=2)
    whole, _ = runner.run_sequence(crops, eyes, feats)
    runner.reset()
    steps = [runner.step(crops[i], eyes[i], feats[i]) for i in range(8)]
    np.testing.assert_allclose(np.stack([s.blendshapes for s in steps]), whole.blendshapes, atol=1e-5)
    np.testing.assert_allclose(np.stack([s.gaze for s in steps]), whole.gaze, atol=1e-5)


def test_runner_reset_forgets_the_previous_frames(runner):
    crops, eyes, feats = _inputs(5, seed=3)
    runner.reset()
    first = runner.step(crops[0], eyes[0], feats[0]).blendshapes
    for i in range(1, 5):
        runner.step(crops[i], eyes[i], feats[i])
    carried = runner.step(crops[0], eyes[0], feats[0]).blendshapes
    runner.reset()
    fresh = runner.step(crops[0], eyes[0], feats[0]).blendshapes
    np.testing.assert_allclose(fresh, first, atol=1e-6)
    assert np.abs(carried - first).max() > 1e-6      # the state did carry before the reset


def test_crop_points_undo_image_position_and_scale():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.3, 0.7, (478, 3)).astype(np.float32)
    m = np.array([[0.5, 0.0, -20.0], [0.0, 0.5, -30.0]], np.float32)     # image px -> crop px
    base = crop_points(lm, m, (400, 300))
    # The same face twice as large in a twice-as-large image, with a transform that undoes it.
    big = crop_points(lm, np.array([[0.25, 0.0, -20.0], [0.0, 0.25, -30.0]], np.float32), (800, 600))
    np.testing.assert_allclose(big, base, atol=1e-5)


def test_rotation_helpers_round_trip():
    v = np.array([0.1, -0.3, 0.2])
    r = rotvec_to_matrix(v)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(matrix_to_quat(r), Rotation.from_rotvec(v).as_quat(), atol=1e-9)
