"""The ``tracked`` mask: on the bus as an optional key, and honoured by every adapter."""

import math

import msgpack
import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle

from avatar_bridge import conventions as cv
from avatar_bridge.adapters.ifacialmocap import encode_ifacialmocap
from avatar_bridge.adapters.live_link_face import LiveLinkFaceConfig, LiveLinkFaceSender
from avatar_bridge.adapters.vmc import VMC_PERFECT_SYNC_NAMES, VmcConfig, VmcSender
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.bus import wire
from avatar_bridge.regions import HEADSET_UNTRACKED, REGION_SHAPES, REGIONS
from avatar_bridge.types import FaceState
from tests.test_adapters import udp_receiver, unreal_decode  # noqa: F401  (fixture)
from tests.test_vrchat import make_sender, sink  # noqa: F401  (fixture)

UPPER = [n for r in ("eyes", "gaze", "brows") for n in REGION_SHAPES[r]]
EYE_OR_BROW = ("Eye", "Brow")


def headset_state(**kw) -> FaceState:
    rng = np.random.default_rng(4)
    bs = rng.uniform(0.2, 0.9, 52).astype(np.float32)
    return FaceState(blendshapes=bs, head_rotation=cv.from_yaw_pitch_roll(0.3, -0.1, 0.05),
                     gaze_left=(0.2, 0.1), gaze_right=(0.25, 0.1), face_present=True, confidence=0.9,
                     untracked=HEADSET_UNTRACKED, **kw)


def test_every_shape_has_one_region_and_the_headset_leaves_the_lower_face_tracked():
    assert sorted(n for r in REGIONS for n in REGION_SHAPES[r]) == sorted(ARKIT_BLENDSHAPES)
    assert set(UPPER) == {n for n in ARKIT_BLENDSHAPES if n.startswith(("eye", "brow"))}
    assert "jaw" not in HEADSET_UNTRACKED and "mouth" not in HEADSET_UNTRACKED


def test_the_mask_crosses_the_bus_and_a_whole_face_payload_is_unchanged():
    state = headset_state()
    seq, back = wire.decode_face(wire.encode_face(state, 5))
    assert back.untracked == HEADSET_UNTRACKED
    msg = msgpack.unpackb(wire.encode_face(state, 5))
    assert msg["tracked"] == {r: r not in HEADSET_UNTRACKED for r in REGIONS}
    # Without untracked regions there is no key at all: old payloads and old readers are untouched.
    whole = FaceState(blendshapes=state.blendshapes, face_present=True)
    assert "tracked" not in msgpack.unpackb(wire.encode_face(whole, 5))
    assert wire.decode_face(wire.encode_face(whole, 5))[1].untracked == frozenset()


def test_a_future_region_is_ignored_and_a_malformed_mask_is_refused():
    msg = wire.face_to_message(headset_state(), 1)
    msg["tracked"]["ears"] = False
    assert wire.message_to_face(wire.validate_face(msg)).untracked == HEADSET_UNTRACKED
    msg["tracked"] = ["eyes"]
    with pytest.raises(wire.WireError, match="tracked"):
        wire.validate_face(msg)


def test_vrchat_in_headset_mode_sends_no_eye_or_brow_parameter(sink):  # noqa: F811
    sender = make_sender(sink)
    sender.send(headset_state())
    got = dict(sink.take())
    sender.close()
    params = [a.rsplit("/", 1)[1] for a in got if a.startswith("/avatar/parameters/")]
    assert "JawOpen" in params and "MouthCornerPullLeft" in params
    assert got["/avatar/parameters/FT/v2/JawOpen"] == pytest.approx((headset_state().blendshape("jawOpen"),), abs=1e-6)
    assert [p for p in params if p.startswith(EYE_OR_BROW)] == []
    assert not [a for a in got if a.startswith("/tracking/eye/")], "native eye tracking left to the headset"


def test_vmc_sends_neutral_eyes_brows_and_gaze_for_untracked_regions(udp_receiver):  # noqa: F811
    state = headset_state()
    sender = VmcSender(VmcConfig(port=udp_receiver.getsockname()[1], rate_hz=0))
    sender.send(state)
    msgs = list(OscBundle(udp_receiver.recv(65536)))
    sender.close()
    blends = {m.params[0]: m.params[1] for m in msgs if m.address == "/VMC/Ext/Blend/Val"}
    for i, name in enumerate(VMC_PERFECT_SYNC_NAMES):
        expected = 0.0 if ARKIT_BLENDSHAPES[i] in UPPER else float(state.blendshapes[i])
        assert blends[name] == pytest.approx(expected, abs=1e-6), name
    eyes = {m.params[0]: m.params[4:] for m in msgs if m.address == "/VMC/Ext/Bone/Pos" and "Eye" in m.params[0]}
    assert eyes["LeftEye"] == pytest.approx([0, 0, 0, 1], abs=1e-6)
    head = next(m.params for m in msgs if m.address == "/VMC/Ext/Bone/Pos" and m.params[0] == "Head")
    assert head[4:] == pytest.approx(cv.to_unity(state.head_rotation, state.head_position)[0], abs=1e-6)


def test_live_link_face_and_ifacialmocap_send_neutral_for_untracked_regions(udp_receiver):  # noqa: F811
    state = headset_state()
    sender = LiveLinkFaceSender(LiveLinkFaceConfig(port=udp_receiver.getsockname()[1], rate_hz=0))
    sender.send(state)
    curves = np.asarray(unreal_decode(udp_receiver.recv(65536))["curves"])
    sender.close()
    upper = [INDEX[n] for n in UPPER]
    assert np.all(curves[upper] == 0.0)
    assert curves[INDEX["jawOpen"]] == pytest.approx(state.blendshape("jawOpen"), abs=1e-6)
    assert list(curves[55:61]) == pytest.approx([0.0] * 6)                      # both eyes straight ahead
    assert curves[52] == pytest.approx(-cv.head_yaw_pitch_roll(state.head_rotation)[0] / -math.pi, abs=1e-5)
    text = encode_ifacialmocap(state).decode()
    assert "eyeBlink_L-0|" in text and "browInnerUp-0|" in text
