"""Evaluate the face-texture GAN beside the same generator trained with L1 only
(``python -m training.evaluate_gan --help``).

On held-out identities (cache/gan/heldout.npz, disjoint from training): each face's frontal frame
is the reference, its other frames are generated from their coefficients and pose and compared to
the true renders: L1 (0..1), PSNR (dB), SSIM (scikit-image, colour), and sharpness (variance of
the Laplacian of the grey image, as a ratio to the true render's: 1 = as sharp as the truth).
Readback: our estimator (MediaPipe tracker + ``--estimator``, the shipped default, one frame at a time, the
128 px face upscaled and padded so the detector sees context) reads each generated face; Pearson r
with the input coefficients for jawOpen, eyeBlink (mean L/R) and mouthSmile (mean L/R), with the
same reading of the true renders as the ceiling. Personalisation: a real clip from
../shared/data/real-faces is tracked; the GAN is fine-tuned on its first 70 % (training/enroll_gan.py)
and generates the rest from their estimated coefficients; the same numbers against the real crops,
before and after fine-tuning. Nothing of the clip is written outside --work (ignored by git).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from avatar_bridge.arkit import INDEX
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.runtime.pipeline import Pipeline, PipelineConfig
from avatar_bridge.types import Frame
from training.gan import load_checkpoint, load_pairs
from training.generate import parse_dataclass_args

READBACK = {"jawOpen": ("jawOpen",), "eyeBlink": ("eyeBlinkLeft", "eyeBlinkRight"),
            "mouthSmile": ("mouthSmileLeft", "mouthSmileRight")}


@dataclass(frozen=True)
class EvaluateGanConfig:
    gan: str = "runs/gan/gan.pt"
    l1_only: str = "runs/gan_l1/gan.pt"
    data: str = "cache/gan/heldout.npz"
    out: str = "docs/texture_eval.json"          # the numbers
    grid: str = "docs/texture_grid.png"           # generated vs true faces across expressions
    clip: str = "../shared/data/real-faces/paddlegan_man_singing.mp4"   # personalisation ('' to skip)
    finetune_steps: int = 300                    # enroll's default
    work: str = "runs/gan_personal"               # the clip's crops and the fine-tuned model (never committed)
    threads: int = 1
    estimator: str = "auto"                      # what reads the generated faces back: what users run


def generate(ckpt: str, refs: np.ndarray, shapes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N,128,128,3) uint8 references + coefficients + pose -> (N,128,128,3) uint8 generated."""
    enc, gen, _ = load_checkpoint(ckpt)
    out = []
    with torch.no_grad():
        for i in range(0, len(refs), 16):
            r = torch.from_numpy(refs[i:i + 16]).permute(0, 3, 1, 2).float() / 255
            img = gen(*enc(r), torch.from_numpy(shapes[i:i + 16]).float(), torch.from_numpy(pose[i:i + 16]).float())
            out.append((img.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


def sharpness(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def image_metrics(fake: np.ndarray, true: np.ndarray) -> dict[str, float]:
    f, t = fake.astype(np.float64) / 255, true.astype(np.float64) / 255
    mse = ((f - t) ** 2).mean((1, 2, 3))
    return {"l1": float(np.abs(f - t).mean()),
            "psnr_db": float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10)))),
            "ssim": float(np.mean([structural_similarity(a, b, channel_axis=2, data_range=255)
                                   for a, b in zip(fake, true)])),
            "sharpness_ratio": float(np.mean([sharpness(a) for a in fake]) / np.mean([sharpness(b) for b in true]))}


class EstimatorReader:
    """Our runtime estimator on single face images (recurrent state reset per image)."""

    def __init__(self, estimator: str) -> None:
        self.pipeline = Pipeline.create(PipelineConfig(estimator=estimator))

    def read(self, images: np.ndarray) -> np.ndarray:
        """(N, 52) coefficients, NaN where no face was found."""
        out = np.full((len(images), 52), np.nan, np.float32)
        for i, img in enumerate(images):
            big = cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)
            big = cv2.copyMakeBorder(big, 128, 128, 128, 128, cv2.BORDER_REPLICATE)
            self.pipeline.estimator.reset()
            self.pipeline.tracker.reset() if hasattr(self.pipeline.tracker, "reset") else None
            state, _ = self.pipeline.process(Frame(big, i, float(i), "evaluate_gan"))
            if state.face_present:
                out[i] = state.blendshapes
        return out


def readback(read: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    ok = ~np.isnan(read[:, 0])
    res = {"found": float(ok.mean())}
    for name, parts in READBACK.items():
        idx = [INDEX[p] for p in parts]
        a, b = read[ok][:, idx].mean(1), truth[ok][:, idx].mean(1)
        res[f"r_{name}"] = float(np.corrcoef(a, b)[0, 1]) if ok.sum() > 2 and a.std() > 1e-6 and b.std() > 1e-6 else float("nan")
    return res


def heldout_pairs(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(reference index, target index): each face's first (frontal) frame against its others."""
    refs, tgts = [], []
    for i in np.unique(data["identity"]):
        idx = np.flatnonzero(data["identity"] == i)
        refs += [idx[0]] * (len(idx) - 1)
        tgts += list(idx[1:])
    return np.array(refs), np.array(tgts)


def grid_image(true: np.ndarray, rows: dict[str, np.ndarray], pick: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Columns: expressions; rows: reference, true render, then each model; labelled on the left."""
    def row(label, imgs):
        pad = np.full((128, 96, 3), 255, np.uint8)
        cv2.putText(pad, label, (4, 68), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        return np.concatenate([pad, *imgs], 1)
    out = [row("reference", refs[pick]), row("true", true[pick])]
    out += [row(name, imgs[pick]) for name, imgs in rows.items()]
    return np.concatenate(out, 0)


def personalise(cfg: EvaluateGanConfig, reader: EstimatorReader) -> dict:
    from avatar_bridge.runtime.enroll import face_crop
    from avatar_bridge.tracking.sources import SourceConfig, open_source
    from training.enroll_gan import finetune
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    crops, shapes, poses = [], [], []
    pipeline = Pipeline.create(PipelineConfig(estimator=cfg.estimator))
    for i, frame in enumerate(open_source(SourceConfig(spec=cfg.clip, realtime=False)).frames()):
        state, _ = pipeline.process(frame)
        if state.face_present and pipeline.last_observation is not None and i % 2 == 0:
            crops.append(face_crop(pipeline.last_observation))
            shapes.append(state.blendshapes)
            poses.append(head_yaw_pitch_roll(state.head_rotation))
    pipeline.close()
    crops, shapes, poses = np.stack(crops), np.stack(shapes).astype(np.float32), np.asarray(poses, np.float32)
    cut = int(0.7 * len(crops))
    np.savez(work / "enroll.npz", images=crops[:cut], blendshapes=shapes[:cut], pose=poses[:cut],
             identity=np.zeros(cut, np.int32))
    finetune(work / "enroll.npz", work / "model", steps=cfg.finetune_steps, base=Path(cfg.gan), int8=False)
    neutral = int(np.argmin(shapes[:cut].sum(1) + 4 * np.abs(poses[:cut]).sum(1)))
    refs = np.repeat(crops[neutral][None], len(crops) - cut, 0)
    res = {"clip": Path(cfg.clip).name, "enrol_frames": cut, "test_frames": len(crops) - cut,
           "finetune_steps": cfg.finetune_steps}
    truth = reader.read(crops[cut:])   # what our estimator reads on the real frames (the ceiling)
    res["readback_real_frames"] = readback(truth, shapes[cut:])
    for name, ck in (("base", cfg.gan), ("personalised", str(work / "model" / "gan.pt"))):
        fake = generate(ck, refs, shapes[cut:], poses[cut:])
        res[name] = {**image_metrics(fake, crops[cut:]), **readback(reader.read(fake), shapes[cut:])}
        cv2.imwrite(str(work / f"{name}_sample.png"),
                    cv2.cvtColor(np.concatenate([np.concatenate(list(crops[cut:][::max(1, (len(crops) - cut) // 6)][:6]), 1),
                                                 np.concatenate(list(fake[::max(1, (len(crops) - cut) // 6)][:6]), 1)], 0),
                                 cv2.COLOR_RGB2BGR))
    return res


def main(argv=None) -> None:
    cfg = parse_dataclass_args(EvaluateGanConfig, argv, __doc__.splitlines()[0])
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(cfg.threads)
    data = load_pairs(cfg.data)
    ri, ti = heldout_pairs(data)
    refs, true = data["images"][ri], data["images"][ti]
    shapes, pose = data["blendshapes"][ti], data["pose"][ti]
    reader = EstimatorReader(cfg.estimator)
    results: dict = {"heldout": {"faces": int(len(np.unique(data["identity"]))), "frames": int(len(ti))}}
    results["heldout"]["readback_true_renders"] = readback(reader.read(true), shapes)
    fakes = {}
    for name, ck in (("gan", cfg.gan), ("l1_only", cfg.l1_only)):
        fakes[name] = generate(ck, refs, shapes, pose)
        summary = torch.load(ck, map_location="cpu", weights_only=False)["summary"]
        results["heldout"][name] = {**image_metrics(fakes[name], true), **readback(reader.read(fakes[name]), shapes),
                                    "train_steps": summary.get("steps_done"), "train_seconds": summary["train_seconds"]}
        print(name, json.dumps(results["heldout"][name]))
    # Columns: the frames with the most jaw, blink and smile, and some at random.
    score = [shapes[:, INDEX["jawOpen"]], shapes[:, INDEX["eyeBlinkLeft"]],
             shapes[:, [INDEX["mouthSmileLeft"], INDEX["mouthSmileRight"]]].mean(1)]
    pick = list(dict.fromkeys([int(np.argsort(-s)[k]) for s in score for k in range(2)]))
    pick += list(np.random.default_rng(0).choice(len(ti), 8 - len(pick), replace=False))
    grid = grid_image(true, {"GAN": fakes["gan"], "L1 only": fakes["l1_only"]}, np.array(pick), refs)
    cv2.imwrite(cfg.grid, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if cfg.clip:
        results["personalisation"] = personalise(cfg, reader)
        print("personalisation", json.dumps(results["personalisation"]))
    Path(cfg.out).write_text(json.dumps(results, indent=1))
    print(f"-> {cfg.out}, {cfg.grid}")


if __name__ == "__main__":
    main()
