"""The geometry baseline on ICT-FaceKit renders with known weights, through real MediaPipe."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_bridge.estimators.geometry import GeometryConfig, GeometryEstimator
from avatar_bridge.conventions import from_yaw_pitch_roll, head_yaw_pitch_roll
from avatar_bridge.tracking.head_pose import HeadPoseConfig
from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
from avatar_bridge.types import Frame
from helpers import ICT_NPZ


pytestmark = pytest.mark.skipif(not ICT_NPZ.exists(), reason=f"ICT-FaceKit data not found at {ICT_NPZ}")


@pytest.fixture(scope="module")
def observe():
    from training.render import Renderer, default_params

    renderer = Renderer(256, 256)
    tracker = FaceTracker(TrackerConfig(static_image_mode=True))

    def run(blendshapes=None, identity_seed=None, **kw):
        identity = None if identity_seed is None else np.random.default_rng(identity_seed).normal(0, 1, 100)
        params = default_params(blendshapes=blendshapes or {}, identity=identity, seed=identity_seed or 0, **kw)
        focal = renderer.height / 2 / math.tan(math.radians(params.fov_y_deg) / 2) / renderer.width
        estimator = GeometryEstimator(GeometryConfig(head_pose=HeadPoseConfig(focal_per_width=focal)))
        obs = tracker.track(Frame(renderer.render(params).image, 0, 0.0, "render"))
        assert obs is not None, "MediaPipe must find the rendered face"
        return estimator.estimate(obs)

    yield run
    tracker.close()
    renderer.close()


@pytest.mark.parametrize("identity_seed", [None, 3, 11])
def test_jaw_open_rises_when_mouth_opens(observe, identity_seed):
    values = [observe({"jawOpen": w}, identity_seed).blendshape("jawOpen") for w in (0.0, 0.4, 0.8)]
    assert values[0] < values[1] < values[2]
    assert values[2] - values[0] > 0.4


@pytest.mark.parametrize("identity_seed", [None, 3, 11])
def test_eye_blink_is_higher_for_closed_eyes(observe, identity_seed):
    open_ = observe({}, identity_seed)
    closed = observe({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}, identity_seed)
    for side in ("Left", "Right"):
        assert closed.blendshape(f"eyeBlink{side}") > open_.blendshape(f"eyeBlink{side}") + 0.3


def test_wink_closes_only_the_winking_eye(observe):
    state = observe({"eyeBlinkLeft": 1.0})
    assert state.blendshape("eyeBlinkLeft") > 0.7 > 0.3 > state.blendshape("eyeBlinkRight")


def test_smile_raises_mouth_smile(observe):
    neutral, smile = observe({}), observe({"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0})
    for side in ("Left", "Right"):
        assert smile.blendshape(f"mouthSmile{side}") > neutral.blendshape(f"mouthSmile{side}") + 0.5


def test_head_turn_to_the_performers_left_is_positive_yaw(observe):
    for yaw_deg in (-20.0, 20.0):
        state = observe(head_rotation=from_yaw_pitch_roll(math.radians(yaw_deg), 0.0, 0.0))
        yaw, pitch, roll = np.degrees(head_yaw_pitch_roll(state.head_rotation))
        assert abs(yaw - yaw_deg) < 5.0 and abs(pitch) < 6.0 and abs(roll) < 4.0


def test_gaze_follows_the_eyeballs(observe):
    left, right = observe(gaze_left=(0.35, 0.0), gaze_right=(0.35, 0.0)), observe(gaze_left=(-0.35, 0.0), gaze_right=(-0.35, 0.0))
    assert left.gaze_left[0] > 0.1 and left.gaze_right[0] > 0.1
    assert right.gaze_left[0] < -0.1 and right.gaze_right[0] < -0.1
