"""The network's input contract travels with the weights: the shipped model carries it, a model
whose contract differs is refused with one line, and building the neural estimator needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from avatar_bridge.estimators.geometry import GeometryEstimator
from avatar_bridge.estimators.registry import EstimatorError, create_estimator
from blendshape_model import SHIPPED_MODEL, SHIPPED_MODEL_INT8
from blendshape_model.contract import GEOMETRY_FEATURES, METADATA_KEY, input_contract
from blendshape_model.features import FeatureExtractor


def test_geometry_distances_come_in_the_order_the_network_reads():
    pts = np.random.default_rng(0).normal(0, 1, (478, 2)).astype(np.float32)
    assert tuple(GeometryEstimator.features(pts)) == GEOMETRY_FEATURES


@pytest.mark.parametrize("path", [SHIPPED_MODEL, SHIPPED_MODEL_INT8], ids=lambda p: p.name)
def test_the_shipped_weights_carry_the_contract_this_code_feeds(path):
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(meta[METADATA_KEY]) == input_contract()
    assert create_estimator("neural", str(path)).name == "neural"


def with_contract(tmp_path, change) -> str:
    """A copy of the shipped model whose stored contract ``change`` edits (None: removes it)."""
    model = onnx.load(str(SHIPPED_MODEL))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    contract = json.loads(entry.value)
    if change is None:
        model.metadata_props.remove(entry)
    else:
        change(contract)
        entry.value = json.dumps(contract)
    out = tmp_path / "model.onnx"
    onnx.save(model, str(out))
    return str(out)


def test_a_model_trained_on_other_geometry_features_is_refused_with_one_line(tmp_path):
    path = with_contract(tmp_path, lambda c: c["geometry_features"].__setitem__(3, "browMean"))
    with pytest.raises(EstimatorError) as err:
        create_estimator("neural", path)
    message = str(err.value)
    assert "\n" not in message
    assert "geometry_features[3] 'browMean'" in message and "'browLeft'" in message
    assert "--estimator geometry" in message


def test_a_model_for_another_crop_size_is_refused(tmp_path):
    path = with_contract(tmp_path, lambda c: c.update(crop_size=128))
    with pytest.raises(EstimatorError, match="crop_size 128 but this avatar-bridge feeds 96"):
        create_estimator("neural", path)


def test_a_model_without_a_contract_is_refused_and_told_to_re_export(tmp_path):
    with pytest.raises(EstimatorError, match="no input_contract .*python -m blendshape_model.export"):
        create_estimator("neural", with_contract(tmp_path, None))


def test_auto_falls_back_to_geometry_on_a_stale_model(tmp_path, caplog):
    path = with_contract(tmp_path, lambda c: c.update(features_version=0))
    assert create_estimator("auto", path).name == "geometry"
    assert any("features_version 0" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_the_feature_vector_matches_the_contract():
    rng = np.random.default_rng(1)
    landmarks = rng.uniform(0.3, 0.7, (478, 3)).astype(np.float32)
    crop = rng.integers(0, 256, (96, 96, 3), np.uint8)
    transform = np.array([[0.2, 0, 0], [0, 0.2, 0]], np.float32)
    features, eyes = FeatureExtractor()(landmarks, crop, transform, (640, 480), np.eye(3))
    assert features.shape == (input_contract()["feature_dim"],)
    assert eyes.shape == (2, *input_contract()["eye_patch"], 3)


def test_building_the_neural_estimator_imports_no_torch():
    code = ("import sys\n"
            "from avatar_bridge.estimators.registry import create_estimator\n"
            "e = create_estimator('neural')\n"
            "assert e.name == 'neural', e.name\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'torchvision'))\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout, out.stdout
