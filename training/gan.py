"""The face-texture GAN: encoder, generator, conditional patch discriminator, and its trainer
(nanoGPT-style: one config, one loop). ``python -m training.gan --help``.

    python -m training.gan_data --out cache/gan/train.npz     # render the pairs (~2 min)
    python -m training.gan --data cache/gan/train.npz --out runs/gan

The **encoder** turns a reference image of a face into an appearance code: a vector (FiLM
modulation of every generator block), two feature maps of the reference at 32x32 and 64x64, and
the reference image itself, which the generator's output is a residual on (skin, hair and
background are copied where the expression does not change them).
The **generator** maps code + 52 ARKit coefficients + head yaw/pitch/roll to a 128x128 RGB face
through residual upsampling blocks (8 -> 16 -> 32 -> 64 -> 128). The **discriminator** is a
conditional PatchGAN: it sees the image beside the reference and a coefficient embedding, and
scores 16x16 patches, so it judges local texture (teeth, lids, edges) rather than the whole face.

Losses: hinge adversarial (SAGAN/SPADE's form: bounded discriminator targets, no saturating log,
so the discriminator cannot run away from a small generator on a CPU budget), L1 to the true
render, and coefficient consistency: a small frozen CNN (``CoefficientReader``, trained here first
on the true renders) reads jawOpen, the blinks and the smiles off the generated face and must
agree with the input. The project's estimator itself (MediaPipe tracker + ONNX network) is not
differentiable, so this reader stands in for it during training; evaluate_gan.py measures the
real readback. Adam, betas (0.5, 0.999) as in pix2pix. Augmentation: a mirrored pair (image
flipped, coefficients through the ARKit mirror permutation, yaw and roll negated) and photometric
jitter applied alike to reference and target (more lights and skins than were rendered).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX, MIRROR_PERMUTATION
from training.generate import parse_dataclass_args

N_SHAPES = len(ARKIT_BLENDSHAPES)
N_POSE = 3                      # yaw, pitch, roll radians
SIZE = 128
# The shapes the reader (and the consistency loss) covers: ones that change the image a lot and
# that our estimator reads well (docs/model_card.md).
READ_SHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight")
READ_INDEX = [INDEX[n] for n in READ_SHAPES]
# The linear basis is stored divided by this, so Adam's step (about lr per step whatever the
# gradient's size) moves it this much faster: an open mouth needs logit changes of ~2, which at
# lr 2e-3 alone would take a thousand steps.
BASIS_GAIN = 20.0


@dataclass(frozen=True)
class GanModelConfig:
    code: int = 96                 # appearance vector length
    width: int = 8                 # channel unit; blocks are 6w, 4w, 2w, w, w/2 at 8..128 px
    map32: int = 16                # reference feature channels given to the generator at 32x32
    map64: int = 8                 # ... and at 64x64


class Encoder(nn.Module):
    """Reference image (B, 3, 128, 128) in 0..1 -> (code (B, C), map32, map64, the reference itself)."""

    def __init__(self, cfg: GanModelConfig) -> None:
        super().__init__()
        w = cfg.width
        def down(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1), nn.LeakyReLU(0.2))
        self.d64, self.d32, self.d16, self.d8 = down(3, w), down(w, 2 * w), down(2 * w, 4 * w), down(4 * w, 6 * w)
        self.to64 = nn.Conv2d(w, cfg.map64, 1)
        self.to32 = nn.Conv2d(2 * w, cfg.map32, 1)
        self.to_code = nn.Linear(6 * w, cfg.code)

    def forward(self, ref):
        x64 = self.d64(ref * 2 - 1)
        x32 = self.d32(x64)
        x8 = self.d8(self.d16(x32))
        return self.to_code(x8.mean((2, 3))), self.to32(x32), self.to64(x64), ref


class ResUp(nn.Module):
    """Residual upsampling block: nearest x2, two 3x3 convs with FiLM from the code, 1x1 skip."""

    def __init__(self, cin: int, cout: int, code: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or cout     # fewer after pruning (training/export_gan.py)
        self.c1 = nn.Conv2d(cin, hidden, 3, 1, 1)
        self.c2 = nn.Conv2d(hidden, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)
        self.film = nn.Linear(code, 2 * hidden)

    def forward(self, x, code):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        gamma, beta = self.film(code)[:, :, None, None].chunk(2, dim=1)
        h = F.leaky_relu(self.c1(x) * (1 + gamma) + beta, 0.2)
        return self.skip(x) + self.c2(h)


class Generator(nn.Module):
    """(code, map32, map64, ref128, coefficients (B, 52), pose (B, 3)) -> image (B, 3, 128, 128) in 0..1.

    The output is the reference changed by a predicted residual (in logit space, so it stays in
    0..1 with gradients everywhere): what a new expression changes is local (mouth, lids, brows),
    so the network spends its capacity there instead of redrawing skin and background. The last
    layer starts at zero, so training starts from "copy the reference"."""

    def __init__(self, cfg: GanModelConfig) -> None:
        super().__init__()
        w, self.w = cfg.width, cfg.width
        cond = cfg.code + N_SHAPES + N_POSE
        self.fc = nn.Sequential(nn.Linear(cond, 6 * w * 64), nn.LeakyReLU(0.2))
        self.up16 = ResUp(6 * w, 4 * w, cond)
        self.up32 = ResUp(4 * w, 2 * w, cond)
        self.up64 = ResUp(2 * w + cfg.map32, w, cond)
        self.up128 = ResUp(w + cfg.map64, w // 2, cond)
        self.to_rgb = nn.Conv2d(w // 2 + 3, 3, 3, 1, 1)
        # A learnt linear "image blendshape" per coefficient (and pose angle) at 32x32, upsampled:
        # the average change each shape makes, which Adam finds in a few hundred steps, while the
        # convolutional path learns the face-specific rest.
        self.basis = nn.Parameter(torch.zeros(N_SHAPES + N_POSE, 3 * 32 * 32))
        nn.init.zeros_(self.to_rgb.weight)   # training starts from "copy the reference"; Adam's
        nn.init.zeros_(self.to_rgb.bias)     # first step makes it non-zero, so gradients flow after

    def forward(self, code, map32, map64, ref128, shapes, pose):
        cond = torch.cat([code, shapes, pose], 1)
        x = self.fc(cond).view(-1, 6 * self.w, 8, 8)
        x = self.up32(self.up16(x, cond), cond)
        x = self.up64(torch.cat([x, map32], 1), cond)
        x = self.up128(torch.cat([x, map64], 1), cond)
        ref = ref128.clamp(0.01, 0.99)
        linear = (torch.cat([shapes, pose], 1) @ (self.basis * BASIS_GAIN)).view(-1, 3, 32, 32)
        linear = F.interpolate(linear, scale_factor=4.0, mode="bilinear", align_corners=False)
        delta = self.to_rgb(torch.cat([F.leaky_relu(x, 0.2), ref * 2 - 1], 1)) + linear
        return torch.sigmoid(torch.log(ref / (1 - ref)) + delta)


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (image, reference, coefficients, pose) -> (B, 1, 16, 16) patch scores."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        sn = nn.utils.spectral_norm   # keeps the hinge critic Lipschitz-bounded, standard with hinge
        self.body = nn.Sequential(
            sn(nn.Conv2d(6, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2))
        self.embed = sn(nn.Linear(N_SHAPES + N_POSE, 4 * w))
        self.head = nn.Sequential(sn(nn.Conv2d(8 * w, 4 * w, 3, 1, 1)), nn.LeakyReLU(0.2),
                                  sn(nn.Conv2d(4 * w, 1, 3, 1, 1)))

    def forward(self, image, ref, shapes, pose):
        h = self.body(torch.cat([image, ref], 1) * 2 - 1)
        e = self.embed(torch.cat([shapes, pose], 1))[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        return self.head(torch.cat([h, e], 1))


class CoefficientReader(nn.Module):
    """Small CNN: face (B, 3, 128, 128) -> READ_SHAPES (B, 5) in 0..1; the differentiable stand-in
    for our estimator in the coefficient-consistency loss."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        layers, c = [], 3
        for o in (w, 2 * w, 4 * w, 4 * w, 4 * w):
            layers += [nn.Conv2d(c, o, 3, 2, 1), nn.BatchNorm2d(o), nn.ReLU()]
            c = o
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * 16, len(READ_SHAPES))

    def forward(self, image):
        return torch.sigmoid(self.head(self.body(image * 2 - 1).flatten(1)))


@dataclass(frozen=True)
class GanTrainConfig:
    data: str = "cache/gan/train.npz"   # from training.gan_data
    out: str = "runs/gan"               # checkpoint, summary, ONNX and loss log go here
    steps: int = 1400                   # generator steps
    minutes: float = 0.0                # wall-clock budget: stop (and save) after this long; 0 = none
    batch: int = 8
    lr_g: float = 2e-3                  # Adam, generator + encoder
    lr_d: float = 4e-3                  # Adam, discriminator (TTUR: the critic learns faster)
    l1_weight: float = 10.0
    adv_weight: float = 0.1             # 0 = the L1-only baseline (no discriminator trained)
    coef_weight: float = 2.0            # coefficient consistency through the reader
    reader_steps: int = 400             # reader pre-training steps on true renders (0: reuse --init's)
    init: str = ""                      # a GAN checkpoint to start from (fine-tuning, enroll)
    width: int = 8                      # GanModelConfig.width (8: ~10 ms per image in onnxruntime)
    code: int = 96                      # GanModelConfig.code
    augment: bool = True                # mirrored pairs + reference photometric/shift jitter
    threads: int = 1                    # torch threads (the machine is shared)
    seed: int = 0
    log_every: int = 50
    export: bool = True                 # write generator.onnx + encoder.onnx beside the checkpoint


def load_pairs(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("images", "blendshapes", "pose", "identity")}


class PairSampler:
    """Random targets, each with its identity's neutral reference, as tensors, with augmentation."""

    def __init__(self, data: dict[str, np.ndarray], seed: int, augment: bool) -> None:
        self.images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()  # uint8
        self.shapes = torch.from_numpy(data["blendshapes"].astype(np.float32))
        self.pose = torch.from_numpy(data["pose"].astype(np.float32))
        ident = data["identity"]
        self.groups = [np.flatnonzero(ident == i) for i in np.unique(ident)]
        self.group_of = np.searchsorted(np.unique(ident), ident)
        self.rng = np.random.default_rng(seed)
        self.augment = augment
        self.mirror = torch.as_tensor(MIRROR_PERMUTATION)

    def sample(self, batch: int):
        tgt = self.rng.integers(0, len(self.images), batch)
        # The reference is the face's neutral frontal frame (frame 0, training/gan_data.py), as at
        # run time; with a random frame the change to draw would depend on the reference's own
        # expression too, which a first run showed the generator cannot learn in its budget.
        ref = np.array([self.groups[self.group_of[t]][0] for t in tgt])
        return self.make(ref, tgt)

    def make(self, ref_idx, tgt_idx):
        ref = self.images[ref_idx].float() / 255
        img = self.images[tgt_idx].float() / 255
        shapes, pose = self.shapes[tgt_idx].clone(), self.pose[tgt_idx].clone()
        if self.augment:
            flip = torch.from_numpy(self.rng.random(len(tgt_idx)) < 0.5)
            if flip.any():   # the whole pair mirrored: performer's left becomes right
                ref[flip], img[flip] = ref[flip].flip(3), img[flip].flip(3)
                shapes[flip] = shapes[flip][:, self.mirror]
                pose[flip] = pose[flip] * torch.tensor([-1.0, 1.0, -1.0])
            ref, img = jitter_pair(ref, img, self.rng)
        return ref, img, shapes, pose


def jitter_pair(ref: torch.Tensor, img: torch.Tensor, rng: np.random.Generator):
    """The same brightness/contrast/colour change on reference and target, per pair: more lights
    and skins than were rendered. No geometric jitter: the output is a residual on the reference,
    which must stay aligned with the target's framing."""
    b = ref.shape[0]
    gain = torch.from_numpy(rng.uniform(0.8, 1.2, (b, 1, 1, 1)).astype(np.float32))
    tint = torch.from_numpy(rng.uniform(0.93, 1.07, (b, 3, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(rng.uniform(-0.06, 0.06, (b, 1, 1, 1)).astype(np.float32))
    return (ref * gain * tint + bias).clamp(0, 1), (img * gain * tint + bias).clamp(0, 1)


def build(cfg: GanModelConfig) -> tuple[Encoder, Generator]:
    return Encoder(cfg), Generator(cfg)


def train_reader(sampler: PairSampler, steps: int, batch: int, progress: bool = True) -> CoefficientReader:
    reader = CoefficientReader()
    opt = torch.optim.Adam(reader.parameters(), lr=2e-3)
    for _ in tqdm(range(steps), desc="reader", disable=not progress):
        _, img, shapes, _ = sampler.sample(batch)
        loss = F.l1_loss(reader(img), shapes[:, READ_INDEX])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return reader.eval().requires_grad_(False)


def train(cfg: GanTrainConfig, progress: bool = True) -> dict:
    """Train; returns the summary (also written as summary.json) with the loss log."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_pairs(cfg.data)
    sampler = PairSampler(data, cfg.seed, cfg.augment)
    mcfg = GanModelConfig(code=cfg.code, width=cfg.width)
    enc, gen = build(mcfg)
    disc = PatchDiscriminator()
    reader = None
    if cfg.init:
        ck = torch.load(cfg.init, map_location="cpu", weights_only=False)
        mcfg = GanModelConfig(**ck["model_config"])
        enc, gen = build(mcfg)
        enc.load_state_dict(ck["encoder"])
        gen.load_state_dict(ck["generator"])
        if ck.get("discriminator"):
            disc.load_state_dict(ck["discriminator"])
        if ck.get("reader") and cfg.reader_steps == 0:
            reader = CoefficientReader()
            reader.load_state_dict(ck["reader"])
            reader.eval().requires_grad_(False)
    t0 = time.time()
    if reader is None:
        reader = train_reader(sampler, cfg.reader_steps, cfg.batch, progress)
    opt_g = torch.optim.Adam([*enc.parameters(), *gen.parameters()], lr=cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    log: list[dict] = []
    acc: dict[str, float] = {}
    adversarial = cfg.adv_weight > 0
    bar = tqdm(range(1, cfg.steps + 1), desc="gan" if adversarial else "l1-only", disable=not progress)
    probe = sampler.sample(16)   # one fixed batch: the losses at the start and at the end
    start = probe_losses(enc, gen, disc, reader, probe)
    deadline = time.time() + cfg.minutes * 60 if cfg.minutes > 0 else math.inf
    for step in bar:
        if time.time() > deadline:   # a shared CPU is slower than planned: keep what was learnt
            break
        ref, img, shapes, pose = sampler.sample(cfg.batch)
        fake = gen(*enc(ref), shapes, pose)
        if adversarial:
            # Hinge loss for the critic: push real patches above +1 and fakes below -1.
            d_loss = F.relu(1 - disc(img, ref, shapes, pose)).mean() + \
                F.relu(1 + disc(fake.detach(), ref, shapes, pose)).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_adv = -disc(fake, ref, shapes, pose).mean()
        else:
            d_loss = g_adv = torch.zeros(())
        l1 = F.l1_loss(fake, img)
        coef = F.l1_loss(reader(fake), shapes[:, READ_INDEX])
        g_loss = cfg.l1_weight * l1 + cfg.coef_weight * coef + cfg.adv_weight * g_adv
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        for k, v in (("g", g_loss), ("d", d_loss), ("l1", l1), ("coef", coef), ("g_adv", g_adv)):
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        if step % cfg.log_every == 0 or step == cfg.steps or time.time() > deadline:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            row = {"step": step, **{k: v / n for k, v in acc.items()}}
            log.append(row)
            acc = {}
            bar.set_postfix(l1=f"{row['l1']:.4f}", d=f"{row['d']:.3f}", coef=f"{row['coef']:.3f}")
    summary = {"train_config": asdict(cfg), "model_config": asdict(mcfg), "log": log,
               "steps_done": log[-1]["step"] if log else 0,
               "probe_start": start, "probe_end": probe_losses(enc, gen, disc, reader, probe),
               "train_seconds": time.time() - t0, "frames": int(len(data["images"])),
               "identities": int(len(sampler.groups)), "machine": platform.processor() or platform.machine(),
               "torch_threads": cfg.threads}
    torch.save({"model_config": asdict(mcfg), "encoder": enc.state_dict(), "generator": gen.state_dict(),
                "discriminator": disc.state_dict() if adversarial else None, "reader": reader.state_dict(),
                "summary": summary}, out / "gan.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.export:
        export_onnx(enc, gen, out)
    return summary


def probe_losses(enc, gen, disc, reader, batch) -> dict[str, float]:
    """L1, coefficient and hinge-critic losses on one batch, without training."""
    ref, img, shapes, pose = batch
    with torch.no_grad():
        fake = gen(*enc(ref), shapes, pose)
        d = F.relu(1 - disc(img, ref, shapes, pose)).mean() + F.relu(1 + disc(fake, ref, shapes, pose)).mean()
        return {"l1": float(F.l1_loss(fake, img)), "coef": float(F.l1_loss(reader(fake), shapes[:, READ_INDEX])),
                "d": float(d)}


def load_checkpoint(path: str | Path) -> tuple[Encoder, Generator, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    enc, gen = build(GanModelConfig(**ck["model_config"]))
    enc.load_state_dict(ck["encoder"])
    gen.load_state_dict(ck["generator"])
    return enc.eval(), gen.eval(), ck


def export_onnx(enc: Encoder, gen: Generator, out: Path) -> tuple[Path, Path]:
    """``encoder.onnx`` (reference -> code, map32, map64, ref128) and ``generator.onnx`` (code,
    map32, map64, ref128, blendshapes, pose -> image), batch 1, fp32; names match blendshape_model/texture.py."""
    enc, gen = enc.eval(), gen.eval()
    ref = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        code, m32, m64, r128 = enc(ref)
    e_path, g_path = out / "encoder.onnx", out / "generator.onnx"
    torch.onnx.export(enc, (ref,), str(e_path), input_names=["reference"],
                      output_names=["code", "map32", "map64", "ref128"], opset_version=17, dynamo=False)
    shapes, pose = torch.rand(1, N_SHAPES), torch.zeros(1, N_POSE)
    torch.onnx.export(gen, (code, m32, m64, r128, shapes, pose), str(g_path),
                      input_names=["code", "map32", "map64", "ref128", "blendshapes", "pose"], output_names=["image"],
                      opset_version=17, dynamo=False)
    return e_path, g_path


def main(argv=None) -> None:
    cfg = parse_dataclass_args(GanTrainConfig, argv, __doc__.splitlines()[0])
    summary = train(cfg)
    first, last = summary["log"][0], summary["log"][-1]
    print(f"{summary['train_seconds']:.0f} s; l1 {first['l1']:.4f} -> {last['l1']:.4f}, "
          f"coef {first['coef']:.4f} -> {last['coef']:.4f}; written to {cfg.out}")


if __name__ == "__main__":
    main()
