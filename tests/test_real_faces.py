"""Real faces decide: the teacher, the distillation and the shipped default, on the labelled
real-person dev set in ../shared/data/real-faces (checking only; nothing trains on it) and with
MediaPipe's Face Landmarker from ../shared/models (a teacher and a peer; never shipped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avatar_bridge.arkit import INDEX, MIRROR_PERMUTATION
from avatar_bridge.runtime.pipeline import PipelineConfig, build_estimator
from avatar_bridge.tracking.tracker import FaceTracker
from avatar_bridge.types import Frame
from training import evaluate_real
from training.teacher import DEFAULT_TASK_PATH, TEACHER_LANDMARKS, TasksPeer, Teacher

REAL = evaluate_real.DEFAULT_DATA
if not (REAL / "labels.json").exists() or not DEFAULT_TASK_PATH.exists():
    pytest.skip("the real-face dev set or MediaPipe's face_landmarker.task is missing from ../shared",
                allow_module_level=True)

# The dev clips with labelled blinks and smiles (labels.json).
BLINK_SMILE_CLIPS = ["xportrait_man_expressions.mp4", "pyfeat_man_smile.mp4", "grid_swwp2s_man.mp4",
                     "pexels_woman_cry_laugh.mp4"]
EYES_AND_SMILE = [INDEX[n] for n in ("eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight")]


@pytest.fixture(scope="module")
def clips() -> list[evaluate_real.Clip]:
    """Every dev clip, tracked once with our tracker (video mode, as the daemon runs it)."""
    out = evaluate_real.load_clips(REAL)
    for clip in out:
        evaluate_real.track(clip)
    return out


def test_the_teacher_on_our_landmarks_agrees_with_mediapipe_on_real_blinks_and_smiles(clips):
    """MediaPipe's blendshape model fed our tracker's landmarks reproduces the whole Face Landmarker
    (its own detector and landmarks) on real blinks and smiles: the teacher reads *our* points.
    Per clip, as the issue first measured it: pooled over clips r is ~0.90 (each face's resting
    offset differs between the two landmark models), per clip the median is ~0.93-0.95."""
    chosen = [c for c in clips if c.name in BLINK_SMILE_CLIPS]
    teacher = Teacher()
    per_shape: dict[int, list[float]] = {j: [] for j in EYES_AND_SMILE}
    for clip in chosen:
        ours, peer = evaluate_real.run_teacher(teacher, clip), evaluate_real.run_peer(TasksPeer, clip)
        ok = ~np.isnan(ours).any(1) & ~np.isnan(peer).any(1)
        assert ok.mean() > 0.95
        for j in EYES_AND_SMILE:
            if peer[ok, j].std() > 0.05:                 # the shape really moves in this clip
                per_shape[j].append(float(np.corrcoef(ours[ok, j], peer[ok, j])[0, 1]))
    for j, rs in per_shape.items():
        assert len(rs) >= 2, j
        assert np.median(rs) >= 0.9 and min(rs) >= 0.7, (j, rs)


def test_the_shipped_default_catches_real_blinks_jaw_opens_and_smiles(clips):
    """What a user sees first: `auto` with shipped defaults, through the signal chain."""
    assert build_estimator(PipelineConfig()).name == "landmarks"
    report = evaluate_real.evaluate(clips, ["auto"], smoothing=True, peers=(), progress=False)
    auto = report["estimators"]["auto"]
    for kind in ("blink", "jaw_open", "smile"):
        caught, events = auto["by_type"][kind]
        assert caught >= 0.85 * events, (kind, auto["misses"])
    caught = sum(auto["by_type"][k][0] for k in ("blink", "jaw_open", "smile"))
    assert caught >= 0.9 * sum(auto["by_type"][k][1] for k in ("blink", "jaw_open", "smile"))
    # No blink, jaw or smile fires on a neutral frame (the avatar does not blink or grin at rest).
    assert not {"blink", "jaw_open", "smile"} & set(auto["false_fires_by_type"]), auto["false_fires_by_type"]


def test_a_mirrored_real_face_swaps_left_and_right(clips):
    """The frame of the dev set whose reading is most one-sided, and its mirror image, each tracked
    afresh: the mirror's reading is the original's with Left and Right swapped."""
    estimator = build_estimator(PipelineConfig(estimator="landmarks"))
    best, best_gap = None, 0.0
    for clip in clips:
        for i, obs in enumerate(clip.observations[::5]):
            if obs is None:
                continue
            bs = estimator.estimate(obs).blendshapes
            gap = float(np.abs(bs - bs[list(MIRROR_PERMUTATION)]).max())
            if gap > best_gap:
                best, best_gap = clip.frames[i * 5], gap
    assert best_gap > 0.1
    with FaceTracker() as tracker:
        a = tracker.track(Frame(np.ascontiguousarray(best), 0, 0.0, "original"))
    with FaceTracker() as tracker:
        b = tracker.track(Frame(np.ascontiguousarray(best[:, ::-1]), 0, 0.0, "mirror"))
    estimator.reset()
    bs_a = estimator.estimate(a).blendshapes
    estimator.reset()
    bs_b = estimator.estimate(b).blendshapes
    swapped = bs_a[list(MIRROR_PERMUTATION)]
    assert np.abs(bs_b - swapped).max() < 0.5 * np.abs(bs_b - bs_a).max()
    assert np.abs(bs_b - swapped).mean() < 0.03


# --- distillation -------------------------------------------------------------------------------


def _tiny_landmark_cache(folder: Path, n: int = 400, seed: int = 0) -> None:
    """Landmark sets without rendering: the canonical face projected to a 192-px frame, with random
    lid, lip and jaw displacement so the teacher's reading varies (a stand-in for tracked renders)."""
    rng = np.random.default_rng(seed)
    canon = np.load(Path(__file__).resolve().parents[1] / "avatar_bridge" / "assets" / "canonical_face.npz")["points"]
    base = np.stack([0.5 + canon[:, 0] * 2.5, 0.5 - canon[:, 1] * 2.5, canon[:, 2]], axis=1)
    lower = base[:, 1] > base[13, 1]          # below the upper lip: moves with the jaw
    lms = np.repeat(base[None], n, axis=0)
    lms[:, :, 1] += rng.uniform(0, 0.08, (n, 1)) * lower
    lms[:, :, :2] += rng.normal(0, 0.002, (n, 478, 2))
    folder.mkdir(parents=True)
    seqs = n // 20                            # the cache's layout: (sequence, frame, ...)
    np.savez(folder / "chunk_00000.npz", landmarks=lms.reshape(seqs, 20, 478, 3).astype(np.float32),
             found=np.ones((seqs, 20), bool), blendshapes=np.zeros((seqs, 20, 52), np.float32),
             image_size=np.array([192, 192]), seq_id=np.arange(seqs), flipped=np.zeros(seqs, np.int64))


def test_a_tiny_distillation_run_lowers_the_loss_and_its_onnx_matches_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from training.distill import DistillConfig, build_student, train

    _tiny_landmark_cache(tmp_path / "sets")
    config = DistillConfig(data=str(tmp_path / "sets"), out=str(tmp_path / "run"), samples=1500,
                           epochs=4, batch=128, hidden=64, val_share=0.2)
    report = train(config, progress=False)
    history = report["history"]
    assert history[-1]["train_mse"] < 0.7 * history[0]["train_mse"]
    assert history[-1]["val_mse"] < history[0]["val_mse"]

    saved = torch.load(tmp_path / "run" / "student.pt")
    student = build_student(config.hidden)
    student.load_state_dict(saved["state_dict"])
    student.eval()
    session = ort.InferenceSession(str(tmp_path / "run" / "landmarks.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["landmarks"]) == TEACHER_LANDMARKS.tolist()
    x = (np.random.default_rng(1).random((8, len(TEACHER_LANDMARKS), 2)) * 150 + 20).astype(np.float32)
    with torch.no_grad():
        expected = student(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"points": x})[0], expected, atol=1e-4)
