"""Ship a trained face-texture GAN: fp32 ONNX encoder + generator, a pruned + int8 generator and
the default reference face, into blendshape_model/weights/ (``python -m training.export_gan --help``).

Pruning is structured (whole hidden channels of each residual block, the smallest L1 norms), so
the small model really does less work; unstructured zeros would not speed up onnxruntime's dense
convolutions. Int8 is dynamic for the fully connected layers only (see ``quantize``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from training.gan import N_POSE, N_SHAPES, ResUp, export_onnx, load_checkpoint, load_pairs
from training.generate import parse_dataclass_args


@dataclass(frozen=True)
class ExportGanConfig:
    checkpoint: str = "runs/gan/gan.pt"
    out: str = "blendshape_model/weights"      # texture_encoder.onnx, texture_generator[.int8].onnx, texture_reference.png
    prune: float = 0.25                        # fraction of each block's hidden channels removed for the int8 model
    calibration: str = "cache/gan/heldout.npz"  # renders for a static int8 calibration (unused by dynamic int8)
    calibration_frames: int = 64


def prune_block(block: ResUp, fraction: float) -> ResUp:
    """A copy of ``block`` keeping the (1 - fraction) hidden channels with the largest c1 L1 norm."""
    hidden = block.c1.out_channels
    keep = max(1, round(hidden * (1 - fraction)))
    idx = block.c1.weight.detach().abs().sum((1, 2, 3)).argsort(descending=True)[:keep].sort().values
    out = ResUp(block.c1.in_channels, block.c2.out_channels, block.film.in_features, hidden=keep)
    with torch.no_grad():
        out.c1.weight.copy_(block.c1.weight[idx]); out.c1.bias.copy_(block.c1.bias[idx])
        out.c2.weight.copy_(block.c2.weight[:, idx]); out.c2.bias.copy_(block.c2.bias)
        out.skip.load_state_dict(block.skip.state_dict())
        rows = torch.cat([idx, idx + hidden])      # gamma rows, then beta rows
        out.film.weight.copy_(block.film.weight[rows]); out.film.bias.copy_(block.film.bias[rows])
    return out


def pruned(gen, fraction: float):
    import copy
    gen = copy.deepcopy(gen)
    for name in ("up16", "up32", "up64", "up128"):
        setattr(gen, name, prune_block(getattr(gen, name), fraction))
    return gen


class _Calibration:
    def __init__(self, feeds: list[dict]) -> None:
        self._items = iter(feeds)

    def get_next(self):
        return next(self._items, None)


def calibration_feeds(enc, data: dict, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    feeds = []
    for i in rng.choice(len(data["images"]), min(n, len(data["images"])), replace=False):
        same = np.flatnonzero(data["identity"] == data["identity"][i])
        ref = torch.from_numpy(data["images"][same[0]][None]).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            code, m32, m64, r128 = (t.numpy() for t in enc(ref))
        feeds.append({"code": code, "map32": m32, "map64": m64, "ref128": r128,
                      "blendshapes": data["blendshapes"][i:i + 1].astype(np.float32),
                      "pose": data["pose"][i:i + 1].astype(np.float32)})
    return feeds


def quantize(fp32: Path, int8: Path, feeds: list[dict] | None = None) -> None:
    """Dynamic int8 for the fully connected layers (the coefficient projection and FiLM hold ~95 %
    of the weights); convolutions stay fp32. Static QDQ/QOperator int8 convolutions were measured
    slower on this CPU (AVX2 without VNNI: 30-33 ms against 20 ms fp32 per image), so they are
    not used; ``feeds`` is kept for a static variant on CPUs with VNNI."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["Gemm", "MatMul"])


def save_half(checkpoint: str, path: Path) -> None:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key in ("encoder", "generator", "discriminator", "reader"):
        if ck.get(key):
            ck[key] = {k: v.half() if v.is_floating_point() else v for k, v in ck[key].items()}
    torch.save(ck, path)


def reference_face(size: int = 128) -> np.ndarray:
    """The default appearance: ICT-FaceKit's mean face, neutral, framed like the training renders."""
    from training.gan_data import FILL, FOV_DEG
    from training.render import Renderer, default_params, framing
    with Renderer(size, size) as r:
        return r.render(default_params(fov_y_deg=FOV_DEG, head_position=framing(FOV_DEG, FILL), background="solid",
                                       background_color=(0.45, 0.5, 0.55))).image


def export(cfg: ExportGanConfig, reference: np.ndarray | None = None, int8: bool = True) -> dict:
    """Write the texture_* files into ``cfg.out``; ``reference`` (128x128 RGB) defaults to the mean face."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    enc, gen, ck = load_checkpoint(cfg.checkpoint)
    tmp = out / "_gan_export"
    tmp.mkdir(exist_ok=True)
    e_path, g_path = export_onnx(enc, gen, tmp)
    e_path.replace(out / "texture_encoder.onnx")
    g_path.replace(out / "texture_generator.onnx")
    if int8:
        _, small = export_onnx(enc, pruned(gen, cfg.prune), tmp)
        quantize(small, out / "texture_generator.int8.onnx")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    if reference is None:   # the shipped model: also the checkpoint enroll fine-tunes from, in fp16 (half the size)
        save_half(cfg.checkpoint, out / "texture_gan.pt")
    ref = reference_face() if reference is None else reference
    cv2.imwrite(str(out / "texture_reference.png"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    return {p.name: p.stat().st_size for p in out.glob("texture_*")}


def main(argv=None) -> None:
    cfg = parse_dataclass_args(ExportGanConfig, argv, __doc__.splitlines()[0])
    print(json.dumps(export(cfg), indent=1))


if __name__ == "__main__":
    main()
