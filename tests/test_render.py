"""The ICT-FaceKit renderer draws faces MediaPipe sees, and what MediaPipe sees follows the truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from avatar_bridge.arkit import INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from training.render import (
    DEFAULT_ICT_PATH, FaceModel, Renderer, default_params, random_params,
)

if not DEFAULT_ICT_PATH.exists():
    pytest.skip(f"ICT-FaceKit archive not found at {DEFAULT_ICT_PATH}; the renderer needs it",
                allow_module_level=True)

mp = pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


@pytest.fixture(scope="module")
def renderer(model: FaceModel):
    with Renderer(256, 256, model=model) as r:
        yield r


@pytest.fixture(scope="module")
def face_mesh():
    fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                                         min_detection_confidence=0.5)
    yield fm
    fm.close()


def mediapipe_landmarks(face_mesh, image: np.ndarray) -> np.ndarray | None:
    """(478, 2) pixel landmarks, or None when MediaPipe finds no face."""
    res = face_mesh.process(image)
    if res.multi_face_landmarks is None:
        return None
    h, w = image.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark], np.float32)


def gap(lm: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(lm[a] - lm[b]))


def test_render_gives_rgb_uint8_of_the_requested_size(renderer: Renderer, model: FaceModel):
    res = renderer.render(default_params())
    assert res.image.shape == (256, 256, 3) and res.image.dtype == np.uint8
    assert res.landmarks68.shape == (68, 2)
    assert res.image.std() > 10, "the frame is flat: nothing was drawn"
    with Renderer(320, 240, model=model) as wide:
        assert wide.render(default_params()).image.shape == (240, 320, 3)


def test_mediapipe_finds_the_face_in_a_neutral_render(renderer: Renderer, face_mesh):
    res = renderer.render(default_params())
    lm = mediapipe_landmarks(face_mesh, res.image)
    assert lm is not None
    # MediaPipe's chin (152) lands near the true Multi-PIE chin (8).
    assert np.linalg.norm(lm[152] - res.landmarks68[8]) < 10.0


def test_mediapipe_finds_random_faces(renderer: Renderer, face_mesh):
    rng = np.random.default_rng(1234)
    found = sum(mediapipe_landmarks(face_mesh, renderer.render(random_params(rng)).image) is not None
                for _ in range(8))
    assert found >= 7


def test_jaw_open_widens_the_inner_lip_gap_mediapipe_sees(renderer: Renderer, face_mesh):
    closed = mediapipe_landmarks(face_mesh, renderer.render(default_params()).image)
    opened = mediapipe_landmarks(face_mesh, renderer.render(default_params(blendshapes={"jawOpen": 0.8})).image)
    assert gap(opened, 13, 14) > gap(closed, 13, 14) + 8.0


def test_flipped_left_blink_looks_like_right_blink(renderer: Renderer, face_mesh):
    # MediaPipe 159/145 are the lids of the eye on the image's left (the performer's right),
    # 386/374 the other eye's. MediaPipe never quite closes a lid, so compare the two eyes.
    def lid_ratio(image: np.ndarray) -> float:
        lm = mediapipe_landmarks(face_mesh, np.ascontiguousarray(image))
        return gap(lm, 159, 145) / gap(lm, 386, 374)

    left = renderer.render(default_params(blendshapes={"eyeBlinkLeft": 1.0})).image
    right = renderer.render(default_params(blendshapes={"eyeBlinkRight": 1.0})).image
    assert lid_ratio(left) > 1.5
    assert lid_ratio(right) < 0.7
    assert lid_ratio(left[:, ::-1]) < 0.7


def test_gaze_turns_the_irises(renderer: Renderer, face_mesh):
    def irises(yaw: float) -> np.ndarray:
        p = default_params(gaze_left=(yaw, 0.0), gaze_right=(yaw, 0.0))
        lm = mediapipe_landmarks(face_mesh, renderer.render(p).image)
        return lm[[468, 473], 0]

    # Towards the performer's left is towards the image's right in an unmirrored camera.
    assert np.all(irises(0.4) - irises(-0.4) > 4.0)


def test_head_yaw_moves_the_true_nose_tip_towards_the_performers_left(renderer: Renderer):
    straight = renderer.render(default_params()).landmarks68[30]
    turned = renderer.render(default_params(head_rotation=from_yaw_pitch_roll(0.4, 0.0, 0.0))).landmarks68[30]
    assert turned[0] > straight[0] + 10.0


def test_arkit_weights_drive_both_ict_halves_and_ignore_tongue_out(model: FaceModel):
    w = np.zeros(52, np.float32)
    w[INDEX["browInnerUp"]] = 1.0
    assert model.arkit_to_ict[:, INDEX["browInnerUp"]].sum() == 2.0      # browInnerUp_L and _R
    assert np.abs(model.arkit_to_ict_deltas(w)).max() > 0.1
    w[:] = 0.0
    w[INDEX["tongueOut"]] = 1.0
    assert not np.any(model.arkit_to_ict_deltas(w))


def test_render_module_does_not_import_torch():
    code = "import sys, training.render; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
