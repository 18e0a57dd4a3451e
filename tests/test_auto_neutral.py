"""Auto-neutral in the signal chain: a performer whose rest reads as an expression still shows a
neutral avatar, without eating real expressions, and a saved neutral calibration replaces it."""

from __future__ import annotations

import numpy as np

from avatar_bridge.arkit import INDEX
from avatar_bridge.signal.chain import SignalChain, SignalChainConfig
from avatar_bridge.signal.profile import Profile
from avatar_bridge.types import FaceState

FPS = 30.0
PUCKER, JAW, BLINK_L, BLINK_R = INDEX["mouthPucker"], INDEX["jawOpen"], INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]


def face(i: int, bs: np.ndarray) -> FaceState:
    return FaceState(blendshapes=np.asarray(bs, np.float32), face_present=True, confidence=1.0,
                     t_capture=i / FPS, frame_index=i)


def rest(rng: np.random.Generator) -> np.ndarray:
    """A full-lipped performer at rest: the estimator reads mouthPucker ~0.7 and the eyes ~0.15."""
    bs = np.clip(rng.normal(0.03, 0.01, 52), 0, 1)
    bs[PUCKER] = 0.7 + rng.normal(0, 0.02)
    bs[BLINK_L] = bs[BLINK_R] = 0.15 + rng.normal(0, 0.01)
    return bs.astype(np.float32)


def run(chain: SignalChain, frames: list[np.ndarray], start: int = 0) -> np.ndarray:
    return np.stack([chain.process(face(start + i, bs)).blendshapes for i, bs in enumerate(frames)])


def test_a_rest_that_reads_as_pucker_is_neutral_within_two_seconds_and_a_blink_still_closes_the_eyes():
    rng = np.random.default_rng(0)
    chain = SignalChain(SignalChainConfig())
    out = run(chain, [rest(rng) for _ in range(120)])
    assert out[0, PUCKER] > 0.3                # at the first frame it cannot know yet
    # two seconds later the avatar's lips are at rest (raw: 0.7), up to the rescaled jitter
    assert out[60:, PUCKER].mean() < 0.1 and out[60:, PUCKER].max() < 0.2
    blink = []
    for k in range(3):                         # a real 3-frame blink
        bs = rest(rng)
        bs[BLINK_L] = bs[BLINK_R] = 0.95
        blink.append(bs)
    out = run(chain, blink + [rest(rng) for _ in range(10)], start=120)
    assert out[:3, [BLINK_L, BLINK_R]].min(axis=1).max() > 0.8
    assert out[-1, [BLINK_L, BLINK_R]].max() < 0.1


def test_eyes_shut_when_tracking_starts_are_not_taken_as_rest():
    rng = np.random.default_rng(1)
    chain = SignalChain(SignalChainConfig())
    shut = []
    for _ in range(6):
        bs = rest(rng)
        bs[BLINK_L] = bs[BLINK_R] = 1.0
        shut.append(bs)
    out = run(chain, shut)
    assert out[:, BLINK_L].min() > 0.8 and out[:, BLINK_R].min() > 0.8


def test_speech_does_not_drag_the_mouth_rest_down():
    """While the jaw is open the lips read pucker 0; the baseline must not learn that as rest, or the
    resting pucker reappears every time the mouth closes."""
    rng = np.random.default_rng(2)
    chain = SignalChain(SignalChainConfig())
    run(chain, [rest(rng) for _ in range(90)])
    talking = []
    for _ in range(60):
        bs = rest(rng)
        bs[JAW], bs[PUCKER] = 0.5, 0.0
        talking.append(bs)
    out = run(chain, talking, start=90)
    assert out[:, JAW].max() > 0.4                       # the open jaw itself shows
    out = run(chain, [rest(rng) for _ in range(15)], start=150)
    assert out[5:, PUCKER].mean() < 0.1 and out[5:, PUCKER].max() < 0.2   # mouth closed again: at rest


def test_a_saved_neutral_calibration_replaces_auto_neutral():
    rng = np.random.default_rng(3)
    profile = Profile(name="me")
    profile.offset[:] = 0.0
    profile.offset[PUCKER] = 0.2                          # a recorded neutral that keeps some pucker
    assert profile.has_neutral
    chain = SignalChain(SignalChainConfig(), profile=profile)
    out = run(chain, [rest(rng) for _ in range(90)])
    assert out[60:, PUCKER].mean() > 0.3                  # the profile decides, not the stream
    assert not Profile(name="fresh").has_neutral
