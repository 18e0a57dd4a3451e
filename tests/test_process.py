"""``process``: the full pipeline over a rendered clip with known jawOpen, one output row per frame."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from avatar_bridge.takes.process import run_process
from avatar_bridge.takes.live_link_csv import import_csv
from avatar_bridge.tracking.sources import demo_clip_path
from avatar_bridge.takes.format import read_take

TRUTH = demo_clip_path().with_name("demo_truth.npz")
needs_clip = pytest.mark.skipif(not (demo_clip_path().exists() and TRUTH.exists()),
                                reason="the rendered demo clip and its truth (avatar_bridge/assets/demo.mp4, "
                                       "demo_truth.npz) are not in this tree")


@pytest.fixture(autouse=True)
def no_user_profile(tmp_path, monkeypatch):
    """Calibration is on by default; keep the user's own saved profile out of the numbers."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@needs_clip
def test_process_writes_one_csv_row_per_frame_and_jaw_open_follows_the_truth(tmp_path):
    truth = np.load(TRUTH)["blendshapes"][:, 17]
    out = tmp_path / "demo.csv"
    report = run_process(demo_clip_path(), out, progress=False, profile_dir=tmp_path / "profiles")
    assert report["frames"] == len(truth) == len(import_csv(out))
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(truth)
    jaw = np.array([float(r["JawOpen"]) for r in rows])
    # Threshold 0.9 (r^2 = 0.81: the output explains over 80% of the true jaw motion). Today's geometry
    # estimator with the signal chain scores ~0.99 on this clip, so 0.9 leaves room for estimator and
    # filter changes while any real break (wrong column, lost or reordered rows, a dead shape) fails.
    r = np.corrcoef(jaw, truth)[0, 1]
    assert r > 0.9, r
    # frame timestamps come from the video (30 fps)
    np.testing.assert_allclose(np.diff(import_csv(out).times), 1 / 30, atol=1e-3)


@needs_clip
def test_process_to_a_take_keeps_frames_aligned_with_media_time(tmp_path):
    truth = np.load(TRUTH)["blendshapes"][:90, 17]
    out = tmp_path / "demo.abr"
    run_process(demo_clip_path(), out, estimator="geometry", smoothing=False, max_frames=90, progress=False, profile_dir=tmp_path / "profiles")
    take = read_take(out)
    assert len(take) == 90 and take.complete
    assert [f.seq for f in take.frames] == list(range(90))
    np.testing.assert_allclose(take.times, np.arange(90) / 30, atol=1e-3)
    assert take.header.extra["estimator"] == "geometry" and take.header.extra["smoothing"] is False
    # Without smoothing (whose One Euro lag is about a frame) row i is frame i: the best lag is zero.
    jaw = take.blendshapes[:, 17]
    best = max(range(-3, 4), key=lambda k: np.corrcoef(np.roll(jaw, k)[3:-3], truth[3:-3])[0, 1])
    assert best == 0


def test_an_image_folder_gets_a_row_per_image_with_no_face_rows_marked(face_and_blank_dir: Path, tmp_path):
    out = tmp_path / "faces.csv"
    run_process(face_and_blank_dir, out, fps=24.0, estimator="geometry", progress=False, profile_dir=tmp_path / "profiles")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    assert [r["FaceDetected"] for r in rows] == ["1"] * 5 + ["0"] * 5 + ["1"] * 5
    np.testing.assert_allclose(np.diff(import_csv(out).times), 1 / 24, atol=1e-3)


def test_process_refuses_to_overwrite_its_output(face_and_blank_dir: Path, tmp_path):
    from avatar_bridge.takes.format import TakeError
    out = tmp_path / "x.abr"
    out.write_bytes(b"precious")
    with pytest.raises(TakeError, match="already exists"):
        run_process(face_and_blank_dir, out, progress=False, profile_dir=tmp_path / "profiles")
    assert out.read_bytes() == b"precious"
