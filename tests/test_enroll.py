"""`avatar-bridge enroll`: consent first, everything local under the profile, one command deletes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from blendshape_model.texture import TextureGenerator, TextureModelConfig

from helpers import cli, hermetic_env


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_enroll_refuses_without_consent_and_stores_nothing(tmp_path):
    profiles = tmp_path / "profiles"
    for answer in ("no\n", ""):      # a refusal, and no answer at all (stdin closed)
        proc = subprocess.run(cli("enroll", "--profile", "alice", "--source", "demo", "--profile-dir", str(profiles)),
                              input=answer, capture_output=True, text=True, env=hermetic_env(), timeout=120,
                              cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "no consent given" in proc.stderr and "Traceback" not in proc.stderr
        assert "saved only on this computer" in proc.stdout    # the question said what would happen
    assert files_under(tmp_path) == set()


def test_enroll_writes_only_under_the_profile_and_delete_removes_it(tmp_path):
    profiles, work = tmp_path / "profiles", tmp_path / "cwd"
    work.mkdir()
    # The user data dir and the working directory are watched too. (Library caches, e.g.
    # matplotlib's font list or onnxruntime's install id, stay in the usual cache dir: no face data.)
    env = hermetic_env(XDG_DATA_HOME=str(tmp_path / "data"))
    proc = subprocess.run(cli("enroll", "--profile", "alice", "--source", "demo", "--profile-dir", str(profiles),
                              "--max-frames", "10", "--steps", "2", "--no-int8"),
                          input="yes\n", capture_output=True, text=True, env=env, timeout=280, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = profiles / "alice.face"
    written = files_under(tmp_path)
    assert written and all(where in p.parents for p in written), sorted(map(str, written))
    names = {p.name for p in written}
    assert {"crops.npz", "texture_encoder.onnx", "texture_generator.onnx", "texture_reference.png"} <= names
    crops = np.load(where / "crops.npz")
    assert crops["images"].shape[1:] == (128, 128, 3) and len(crops["images"]) == 10
    # The enrolled model is what `run --texture --profile alice` loads: it draws a face.
    image = TextureGenerator(TextureModelConfig(model_dir=str(where))).generate(np.zeros(52, np.float32))
    assert image.shape == (128, 128, 3) and image.std() > 5

    proc = subprocess.run(cli("enroll", "--delete", "--profile", "alice", "--profile-dir", str(profiles)),
                          capture_output=True, text=True, env=env, timeout=60, cwd=work)
    assert proc.returncode == 0 and "deleted" in proc.stdout
    assert not where.exists() and files_under(tmp_path) == set()
