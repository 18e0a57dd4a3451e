"""Export a trained BlendshapeNet to ONNX (GRU state as explicit input/output), and an int8 copy.

Graph: inputs ``crop`` (B, T, S, S, 3) uint8, ``eyes`` (B, T, 2, EH, EW, 3) uint8, ``features``
(B, T, F) float32, ``h`` (1, B, H) float32; outputs ``blendshapes`` (B, T, 52), ``gaze`` (B, T, 4), ``pose_delta`` (B, T, 3),
``h_next`` (1, B, H). B and T are dynamic: the runner feeds T = 1 per frame and carries ``h``.
The ONNX metadata carries the model's config (``model_config`` JSON), its input contract
(``input_contract``: crop size, eye patch, feature layout version and geometry feature names, checked
when the runner loads it; blendshape_model/contract.py) and the avatar-bridge version that exported it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from avatar_bridge import __version__
from blendshape_model.contract import METADATA_KEY, input_contract
from blendshape_model.model import BlendshapeNet

log = logging.getLogger(__name__)

INPUTS = ("crop", "eyes", "features", "h")
OUTPUTS = ("blendshapes", "gaze", "pose_delta", "h_next")


def export_onnx(model: BlendshapeNet, path: str | Path, metadata: dict | None = None, opset: int = 17) -> Path:
    """Write ``model`` (put in eval mode) to ``path``; returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    cfg = model.config
    crop = torch.zeros(1, 2, cfg.crop_size, cfg.crop_size, 3, dtype=torch.uint8)
    eyes = torch.zeros(1, 2, 2, *cfg.eye_patch, 3, dtype=torch.uint8)
    feats = torch.zeros(1, 2, cfg.feature_dim)
    h = model.initial_state(1)
    dyn = {"crop": {0: "batch", 1: "time"}, "eyes": {0: "batch", 1: "time"}, "features": {0: "batch", 1: "time"}, "h": {1: "batch"},
           "blendshapes": {0: "batch", 1: "time"}, "gaze": {0: "batch", 1: "time"},
           "pose_delta": {0: "batch", 1: "time"}, "h_next": {1: "batch"}}
    # The TorchScript exporter maps nn.GRU to one ONNX GRU op, which onnxruntime runs fastest.
    torch.onnx.export(model, (crop, eyes, feats, h), str(path), input_names=list(INPUTS), output_names=list(OUTPUTS),
                      dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(path))
    meta = {"model_config": json.dumps(asdict(cfg)), METADATA_KEY: json.dumps(input_contract()),
            "exported_by": json.dumps(f"avatar-bridge {__version__}"),
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


class _QuantisationFrames:
    """Feeds real (crop, eyes, features) frames to onnxruntime's static quantiser."""

    def __init__(self, crops: np.ndarray, eyes: np.ndarray, features: np.ndarray, hidden: int) -> None:
        self._items = iter([{"crop": crops[i:i + 1, None], "eyes": eyes[i:i + 1, None],
                             "features": features[i:i + 1, None].astype(np.float32),
                             "h": np.zeros((1, 1, hidden), np.float32)} for i in range(len(crops))])

    def get_next(self):
        return next(self._items, None)


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, crops: np.ndarray, eyes: np.ndarray,
                  features: np.ndarray, hidden: int) -> Path:
    """Static int8 (QDQ, per-channel weights) calibrated on real frames; the GRU stays float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    pre = int8_path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(int8_path), _QuantisationFrames(crops, eyes, features, hidden),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                    calibrate_method=CalibrationMethod.MinMax)
    pre.unlink(missing_ok=True)
    return _copy_metadata(fp32_path, int8_path, "static int8 QDQ, per-channel weights; GRU float")


def quantize_dynamic_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 for the MatMul/Gemm layers (weights int8, activations quantised on the fly);
    convolutions and the GRU stay float. The default: the landmark branch's first layer holds most
    of the weights, so this is the part where int8 arithmetic pays for its conversions."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    return _copy_metadata(fp32_path, int8_path, "dynamic int8 MatMul/Gemm; convolutions and GRU float")


def _copy_metadata(fp32_path: str | Path, int8_path: str | Path, quantization: str) -> Path:
    """The quantised graph keeps the fp32 one's metadata (model config, training run) and says how
    it was quantised."""
    import onnx

    src, dst = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    del dst.metadata_props[:]
    for p in src.metadata_props:
        dst.metadata_props.add().CopyFrom(p)
    entry = dst.metadata_props.add()
    entry.key, entry.value = "quantization", json.dumps(quantization)
    onnx.save(dst, str(int8_path))
    return Path(int8_path)


def main(argv=None) -> None:
    """``python -m blendshape_model.export --ckpt runs/ship/ckpt.pt --out blendshape_model/weights``"""
    import argparse

    from blendshape_model.model import model_from_checkpoint

    p = argparse.ArgumentParser(description="Export a trainer checkpoint to ONNX (fp32 + int8).")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "weights"))
    p.add_argument("--int8", choices=("dynamic", "static"), default="dynamic",
                   help="dynamic: MatMul/Gemm only, faster than fp32 here; static: calibrated QDQ, every Conv too")
    p.add_argument("--calib", default="cache/synth/train", help="cached set whose frames calibrate --int8 static")
    p.add_argument("--calib-frames", type=int, default=256)
    a = p.parse_args(argv)
    ckpt = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    model = model_from_checkpoint(ckpt)
    out = Path(a.out)
    meta = {"train": ckpt.get("run", {}), "final": ckpt.get("final", {}), "data": ckpt.get("data", {}).get("folder", "")}
    fp32 = export_onnx(model, out / "blendshapes.onnx", metadata=meta)
    int8 = out / "blendshapes.int8.onnx"
    if a.int8 == "dynamic":
        quantize_dynamic_int8(fp32, int8)
    else:
        from training.dataset import load_cache
        data = load_cache(a.calib, max_sequences=64)
        rng = np.random.default_rng(0)
        s, t = np.nonzero(data.found)
        pick = rng.choice(len(s), size=min(a.calib_frames, len(s)), replace=False)
        quantize_int8(fp32, int8, data.crops[s[pick], t[pick]], data.eyes[s[pick], t[pick]],
                      data.features[s[pick], t[pick]], model.config.gru_hidden)
    print(f"wrote {fp32} ({fp32.stat().st_size / 1e6:.2f} MB) and {int8} ({int8.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
