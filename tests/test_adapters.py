"""Adapters put real packets on real UDP sockets; third-party decoders read them back."""

import logging
import math
import socket
import struct
import sys
import threading
import time

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_server import ThreadingOSCUDPServer

from avatar_bridge import conventions as cv
from avatar_bridge.adapters.ifacialmocap import IFacialMocapConfig, IFacialMocapSender
from avatar_bridge.adapters.live_link_face import LiveLinkFaceConfig, LiveLinkFaceSender, encode_live_link_face
from avatar_bridge.adapters.registry import create_adapter, create_adapters
from avatar_bridge.adapters.runner import AdapterThread
from avatar_bridge.adapters.udp import RateGate, bind_udp
from avatar_bridge.adapters.vmc import (VMC_PERFECT_SYNC_NAMES, VmcBundleEncoder, VmcConfig, VmcSender,
                                        encode_vmc_bundle)
from avatar_bridge.bus.sockets import BusConfig, BusPublisher
from avatar_bridge.types import FaceState
from helpers import unreal_decode

F32 = 1e-6


def make_state(seed=0) -> FaceState:
    rng = np.random.default_rng(seed)
    return FaceState(blendshapes=rng.random(52).astype(np.float32),
                     head_rotation=cv.from_yaw_pitch_roll(0.3, -0.1, 0.05), head_position=(0.02, -0.01, -0.55),
                     gaze_left=(0.1, 0.05), gaze_right=(0.12, 0.04), confidence=0.9, face_present=True,
                     t_capture=1.0, frame_index=7)


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- VMC
def test_vmc_packets_decode_with_python_osc(udp_receiver):
    state = make_state()
    sender = VmcSender(VmcConfig(port=udp_receiver.getsockname()[1], rate_hz=0))
    sender.send(state)
    data = udp_receiver.recv(65536)
    sender.close()
    assert OscBundle.dgram_is_bundle(data)
    msgs = [m for m in OscBundle(data)]
    addresses = [m.address for m in msgs]
    assert addresses[:2] == ["/VMC/Ext/Root/Pos", "/VMC/Ext/Bone/Pos"]
    assert addresses[-3:] == ["/VMC/Ext/Blend/Apply", "/VMC/Ext/OK", "/VMC/Ext/T"]
    assert msgs[0].params == ["root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    head = msgs[1].params
    assert head[0] == "Head" and head[1:4] == [0.0, 0.0, 0.0]
    expected_q, _ = cv.to_unity(state.head_rotation, state.head_position)
    assert head[4:] == pytest.approx(expected_q, abs=F32)
    blends = {m.params[0]: m.params[1] for m in msgs if m.address == "/VMC/Ext/Blend/Val"}
    assert list(blends) == list(VMC_PERFECT_SYNC_NAMES)
    for i, name in enumerate(VMC_PERFECT_SYNC_NAMES):
        assert blends[name] == pytest.approx(float(state.blendshapes[i]), abs=F32)
    assert msgs[-2].params == [1]
    assert isinstance(msgs[-1].params[0], float)
    assert sender.stats()["packets"] == 1


def test_vmc_fast_encoder_is_byte_identical_to_python_osc_builders():
    for seed in range(3):
        state = make_state(seed)
        for eye_bones in (True, False):
            fast = VmcBundleEncoder(eye_bones=eye_bones).encode(state, 12.5 + seed)
            assert fast == encode_vmc_bundle(state, 12.5 + seed, eye_bones=eye_bones)


def test_vmc_eye_bones_turn_towards_the_avatars_left_when_the_performer_looks_left():
    state = FaceState(blendshapes=np.zeros(52, np.float32), gaze_left=(0.3, 0.0), gaze_right=(0.3, 0.0))
    msgs = {m.params[0]: m.params for m in OscBundle(encode_vmc_bundle(state, 0.0)) if m.address == "/VMC/Ext/Bone/Pos"}
    q = msgs["LeftEye"][4:]
    assert cv.rotate(q, (0, 0, 1))[0] < -0.2  # Unity: avatar's left is -x


# ---------------------------------------------------------------- Live Link Face
def test_live_link_face_header_bytes_match_unreals_layout():
    state = FaceState.neutral()
    data = encode_live_link_face(state, "Face", "dev", frame_number=1234, subframe=0.5, rate=(60, 1))
    assert data[:1] == b"\x06"
    assert data[1:8] == b"\x00\x00\x00\x03dev"
    assert data[8:16] == b"\x00\x00\x00\x04Face"
    assert data[16:32] == struct.pack(">ifii", 1234, 0.5, 60, 1)
    assert data[32] == 61 and len(data) == 33 + 61 * 4


def test_live_link_face_packets_decode_like_unreal_and_with_pylivelinkface(udp_receiver):
    from pylivelinkface import PyLiveLinkFace
    state = make_state(3)
    device = "12345678-1234-1234-1234-123456789abc"  # 36 chars, what pylivelinkface's decoder assumes
    sender = LiveLinkFaceSender(LiveLinkFaceConfig(port=udp_receiver.getsockname()[1], subject="Avatar1",
                                                   device_id=device, rate_hz=0))
    sender.send(state)
    data = udp_receiver.recv(65536)
    sender.close()
    d = unreal_decode(data)
    assert (d["version"], d["device"], d["subject"], d["count"], d["rate"]) == (6, device, "Avatar1", 61, (60, 1))
    assert np.allclose(d["curves"][:52], state.blendshapes, atol=F32)
    yaw, pitch, roll = cv.head_yaw_pitch_roll(state.head_rotation)
    assert d["curves"][52:55] == pytest.approx((yaw / math.pi, pitch / math.pi, -roll / math.pi), abs=F32)
    assert d["curves"][55] == pytest.approx(state.gaze_left[0] / math.pi, abs=F32)      # LeftEyeYaw
    assert d["curves"][56] == pytest.approx(-state.gaze_left[1] / math.pi, abs=F32)     # LeftEyePitch (+ = down)

    # pylivelinkface decodes our (correct) packet too, because a 36-char id's length byte is 0x24
    ok, face = PyLiveLinkFace.decode(data)
    assert ok and face.name == "Avatar1"
    assert np.allclose(face._blend_shapes, d["curves"], atol=F32)


def test_our_live_link_face_packet_is_byte_for_byte_the_layout_receivers_built_on_pylivelinkface_expect():
    # Many Python receivers copy pylivelinkface's layout; for the app's 36-character device id its
    # 4-byte '<I' version plus '$' prefix happen to be the same bytes as our (Unreal's) 1-byte version
    # plus int32 length 36. So our packet must match its packet everywhere but the frame time.
    from pylivelinkface import FaceBlendShape, PyLiveLinkFace
    device = "12345678-1234-1234-1234-123456789abc"
    state = make_state(5)
    ours = encode_live_link_face(state, "Avatar1", device, frame_number=1234, subframe=0.5)
    face = PyLiveLinkFace(name="Avatar1", uuid=device)
    for shape, value in zip(FaceBlendShape, unreal_decode(ours)["curves"]):
        face.set_blendshape(shape, value, no_filter=True)
    theirs = face.encode()
    head = 1 + 4 + len(device) + 4 + len("Avatar1")       # version, device id, subject
    assert len(ours) == len(theirs)
    assert ours[:head] == theirs[:head]
    assert ours[head + 16:] == theirs[head + 16:]          # curve count and the 61 curves
    assert ours[head:head + 16] == struct.pack(">ifii", 1234, 0.5, 60, 1)


# ---------------------------------------------------------------- iFacialMocap
def parse_ifacialmocap(text: str) -> dict:
    """Independent parser of the public iFacialMocap v1 text format."""
    out = {"bs": {}}
    for part in filter(None, text.split("|")):
        if part.startswith("=head#"):
            out["head"] = [float(x) for x in part[6:].split(",")]
        elif "#" in part:
            label, vals = part.split("#")
            out[label] = [float(x) for x in vals.split(",")]
        else:
            name, val = part.rsplit("-", 1)
            out["bs"][name] = int(val)
    return out


def test_ifacialmocap_frames_carry_every_shape_in_percent(udp_receiver):
    state = make_state(5)
    sender = IFacialMocapSender(IFacialMocapConfig(port=udp_receiver.getsockname()[1], rate_hz=0))
    sender.send(state)
    parsed = parse_ifacialmocap(udp_receiver.recv(65536).decode("ascii"))
    sender.close()
    assert len(parsed["bs"]) == 52
    assert parsed["bs"]["eyeBlink_L"] == round(100 * float(state.blendshapes[0]))
    assert parsed["bs"]["tongueOut"] == round(100 * float(state.blendshapes[51]))
    yaw, pitch, roll = cv.head_yaw_pitch_roll(state.head_rotation)
    assert parsed["head"][:3] == pytest.approx([math.degrees(pitch), math.degrees(yaw), math.degrees(roll)], abs=1e-3)
    assert len(parsed["leftEye"]) == 3 and len(parsed["rightEye"]) == 3


def test_ifacialmocap_follows_a_handshake(udp_receiver):
    listen = closed_udp_port()
    sender = IFacialMocapSender(IFacialMocapConfig(host="127.0.0.2", port=udp_receiver.getsockname()[1],
                                                   rate_hz=0, listen_port=listen))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"iFacialMocap_sahuasouryya9218sauhuiayeta91555dy3719", ("127.0.0.1", listen))
        deadline = time.monotonic() + 2
        while sender.handshakes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sender.stats()["target"] == f"127.0.0.1:{udp_receiver.getsockname()[1]}"
        sender.send(make_state())
        assert udp_receiver.recv(65536).startswith(b"eyeBlink_L-")
    finally:
        sender.close()


# ---------------------------------------------------------------- failures never crash
@pytest.mark.parametrize("name", ["vmc", "livelink", "ifacialmocap"])
def test_closed_port_gives_one_log_line_and_no_exception(name, caplog):
    adapter = create_adapter(name, {"port": closed_udp_port(), "rate_hz": 0})
    with caplog.at_level(logging.WARNING):
        for _ in range(6):
            adapter.send(make_state())
            time.sleep(0.01)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "nothing is listening" in warnings[0].getMessage()
    assert adapter.stats()["errors"] >= 1
    adapter.close()


def test_bad_hostname_gives_one_clear_line(caplog):
    adapter = VmcSender(VmcConfig(host="no-such-host.invalid", rate_hz=0))
    with caplog.at_level(logging.WARNING):
        adapter.send(make_state())
        adapter.send(make_state())
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "cannot resolve host 'no-such-host.invalid'" in lines[0]
    assert adapter.stats()["packets"] == 0
    adapter.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="holder lookup uses /proc without psutil")
def test_taken_local_port_is_reported_with_its_holder(caplog):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    with caplog.at_level(logging.WARNING):
        assert bind_udp("test", "127.0.0.1", port, logging.getLogger("t")) is None
    holder.close()
    msg = caplog.records[-1].getMessage()
    assert f"UDP 127.0.0.1:{port}" in msg and "held by" in msg and "pid" in msg


def test_frames_above_the_rate_are_dropped():
    gate = RateGate(60.0)
    allowed = sum(gate.allow(now=i / 240) for i in range(240))  # 240 fps for 1 s
    assert 58 <= allowed <= 62 and gate.dropped == 240 - allowed


def test_unknown_adapter_or_option_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown adapter 'osc'"):
        create_adapters(["osc"])
    with pytest.raises(ValueError, match="unknown option"):
        create_adapters(["vmc"], {"vmc": {"colour": 1}})


# ---------------------------------------------------------------- end to end through the bus
def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bus_to_vmc_end_to_end_with_python_osc_server():
    received = []
    dispatcher = Dispatcher()
    dispatcher.map("/VMC/Ext/Blend/Val", lambda addr, name, value: received.append((name, value)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    pub = BusPublisher(BusConfig(pub_endpoint=endpoint, control_endpoint=f"tcp://127.0.0.1:{free_tcp_port()}"))
    thread = AdapterThread(VmcSender(VmcConfig(port=server.server_address[1], rate_hz=0)), endpoint)
    thread.start()
    state = make_state(9)
    try:
        pub._send(b"face", b"\xc1 not msgpack")  # malformed: counted, not fatal
        deadline = time.monotonic() + 5
        while len(received) < 52 and time.monotonic() < deadline:  # ZeroMQ slow joiner: keep publishing
            pub.publish_face(state)
            time.sleep(0.02)
        assert len(received) >= 52
        got = dict(received[:52])
        for i, name in enumerate(VMC_PERFECT_SYNC_NAMES):
            assert got[name] == pytest.approx(float(state.blendshapes[i]), abs=F32)
        assert thread.stats()["received"] >= 1 and thread.stats()["packets"] >= 1
        assert thread.malformed in (0, 1)  # 1 unless the subscriber joined after the garbage
        pub._send(b"face", b"\xc1 garbage")
        deadline = time.monotonic() + 2
        while thread.malformed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.malformed >= 1 and thread.is_alive()
    finally:
        thread.stop()
        pub.close()
        server.shutdown()
        server.server_close()
    assert not thread.is_alive()


def test_frames_at_the_rate_with_jitter_all_pass():
    gate = RateGate(60.0)
    rng = np.random.default_rng(1)
    times = np.arange(600) / 60.0 + rng.uniform(-0.004, 0.004, 600)
    assert sum(gate.allow(now=float(t)) for t in times) == 600
