"""The face-texture GAN's training: real renders, a real (tiny) run, the real ONNX export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.gan import GanTrainConfig, PatchDiscriminator, load_checkpoint, train
from training.gan_data import GanDataConfig, render_set


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("gan")
    data = render_set(GanDataConfig(identities=2, per_identity=4, seed=3), progress=False)
    np.savez(d / "pairs.npz", **data)
    summary = train(GanTrainConfig(data=str(d / "pairs.npz"), out=str(d / "run"), steps=40, batch=4,
                                   reader_steps=20, log_every=1), progress=False)
    return d / "run", summary, data


def test_tiny_run_lowers_the_generator_losses_from_their_start(tiny_run):
    # L1 and coefficient consistency, both on one fixed batch before the first step and after the
    # last. (The hinge critic's loss is a game, not a target: in 40 steps it stays near 2 because
    # the generator starts as a copy of a real reference; the next test checks what it learns.)
    _, summary, _ = tiny_run
    start, end = summary["probe_start"], summary["probe_end"]
    assert end["l1"] < 0.9 * start["l1"], (start, end)
    assert end["coef"] <= start["coef"] + 1e-3, (start, end)


def test_tiny_run_discriminator_learns_to_tell_renders_from_generated_faces(tiny_run):
    # The hinge critic's own loss need not fall while the generator improves (it is a game);
    # what it must learn is to score true renders above generated ones.
    run, _, data = tiny_run
    enc, gen, ck = load_checkpoint(run / "gan.pt")
    disc = PatchDiscriminator()
    disc.load_state_dict(ck["discriminator"])
    img = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float() / 255
    ref = img[[0, 0, 0, 0, 4, 4, 4, 4]]
    shapes, pose = torch.from_numpy(data["blendshapes"]), torch.from_numpy(data["pose"])
    with torch.no_grad():
        fake = gen(*enc(ref), shapes, pose)
        real_score = disc(img, ref, shapes, pose).mean()
        fake_score = disc(fake, ref, shapes, pose).mean()
    assert real_score > fake_score


def test_rendered_pairs_share_a_face_and_differ_in_expression(tiny_run):
    _, _, data = tiny_run
    assert data["images"].shape == (8, 128, 128, 3)
    assert list(data["identity"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert not data["blendshapes"][[0, 4]].any(), "each face's frame 0 is its neutral reference"
    assert data["blendshapes"][[1, 2, 3, 5, 6, 7]].any(1).all()
    # Two frames of one face differ less than frames of two faces (same skin, light, background).
    same = np.abs(data["images"][0].astype(int) - data["images"][1]).mean()
    other = np.abs(data["images"][0].astype(int) - data["images"][4]).mean()
    assert same < other


def test_onnx_export_matches_pytorch(tiny_run):
    run, _, data = tiny_run
    enc, gen, _ = load_checkpoint(run / "gan.pt")
    ref = torch.from_numpy(data["images"][:1]).permute(0, 3, 1, 2).float() / 255
    shapes = torch.from_numpy(data["blendshapes"][1:2])
    pose = torch.from_numpy(data["pose"][1:2])
    with torch.no_grad():
        code, m32, m64, r128 = enc(ref)
        want = gen(code, m32, m64, r128, shapes, pose).numpy()
    e = ort.InferenceSession(str(run / "encoder.onnx"), providers=["CPUExecutionProvider"])
    g = ort.InferenceSession(str(run / "generator.onnx"), providers=["CPUExecutionProvider"])
    c, a, b, r = e.run(None, {"reference": ref.numpy()})
    got = g.run(None, {"code": c, "map32": a, "map64": b, "ref128": r, "blendshapes": shapes.numpy(),
                       "pose": pose.numpy()})[0]
    assert got.shape == (1, 3, 128, 128)
    assert np.abs(got - want).max() < 1e-4
