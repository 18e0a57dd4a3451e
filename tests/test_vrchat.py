"""VRChat OSC: Unified Expressions parameters, change-only sending, avatar changes and OSCQuery."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from avatar_bridge.arkit import INDEX
from avatar_bridge.adapters import oscquery
from avatar_bridge.adapters.unified_expressions import PARAM_NAMES
from avatar_bridge.adapters.vrchat import EYE_PITCH_YAW, EYES_CLOSED, VrchatConfig, VrchatSender, vrchat_values
from avatar_bridge.adapters.vrchat_avatar import load_avatar_config
from avatar_bridge.types import FaceState


class OscSink:
    """A python-osc server collecting every message it gets."""

    def __init__(self):
        self.messages = []
        self._lock = threading.Lock()
        d = Dispatcher()
        d.set_default_handler(self._on)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _on(self, address, *args):
        with self._lock:
            self.messages.append((address, args))

    def take(self, quiet=0.2, limit=5.0):
        """Everything received until nothing new arrived for ``quiet`` s (so a loaded machine
        cannot split one burst across two takes)."""
        deadline, last = time.monotonic() + limit, -1
        while time.monotonic() < deadline:
            with self._lock:
                n = len(self.messages)
            if n == last:
                break
            last = n
            time.sleep(quiet)
        with self._lock:
            out, self.messages = self.messages, []
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    s = OscSink()
    yield s
    s.close()


def state_with(**shapes) -> FaceState:
    bs = np.zeros(52, np.float32)
    for k, v in shapes.items():
        bs[INDEX[k]] = v
    return FaceState(blendshapes=bs, gaze_left=(0.1, 0.05), gaze_right=(0.1, 0.05), face_present=True)


def make_sender(sink, **kw) -> VrchatSender:
    cfg = dict(port=sink.port, rate_hz=0, listen_port=None, oscquery=False)
    cfg.update(kw)
    return VrchatSender(VrchatConfig(**cfg))


def test_vrchat_parameters_decode_with_python_osc(sink):
    sender = make_sender(sink)
    state = state_with(jawOpen=0.6, mouthSmileLeft=0.4, eyeBlinkLeft=1.0)
    sender.send(state)
    got = dict(sink.take())
    sender.close()
    assert got["/avatar/parameters/FT/v2/JawOpen"] == pytest.approx((0.6,), abs=1e-6)
    assert got["/avatar/parameters/FT/v2/MouthCornerPullLeft"] == pytest.approx((0.4,), abs=1e-6)
    assert got["/avatar/parameters/FT/v2/EyeLidLeft"] == pytest.approx((0.0,), abs=1e-6)
    assert got["/avatar/parameters/FT/v2/EyeLidRight"] == pytest.approx((0.75,), abs=1e-6)
    assert all(isinstance(v[0], float) for v in got.values())
    assert len([a for a in got if a.startswith("/avatar/parameters/")]) == len(PARAM_NAMES)
    # native eye tracking: degrees, pitch + = down, yaw + = right (ours: + = up / + = left)
    lp, ly, rp, ry = got[EYE_PITCH_YAW]
    assert lp == pytest.approx(-np.degrees(0.05), abs=1e-4) and ly == pytest.approx(-np.degrees(0.1), abs=1e-4)
    assert got[EYES_CLOSED] == pytest.approx((0.5,))


def test_vrchat_sends_nothing_for_a_parameter_that_did_not_change(sink):
    sender = make_sender(sink)
    sender.send(state_with(jawOpen=0.5))
    assert len(sink.take()) > 50
    sender.send(state_with(jawOpen=0.5))
    assert sink.take() == []
    sender.send(state_with(jawOpen=0.5 + 0.5 / 127))  # below the 8-bit step: still nothing
    assert sink.take() == []
    sender.send(state_with(jawOpen=0.7))
    assert [a for a, _ in sink.take()] == ["/avatar/parameters/FT/v2/JawOpen"]
    assert sender.stats()["skipped_unchanged"] > 50
    sender.close()


def write_avatar_config(root, avatar_id):
    doc = {"id": avatar_id, "name": "Test", "parameters": [
        {"name": "FT/v2/JawOpen", "input": {"address": "/avatar/parameters/FT/v2/JawOpen", "type": "Float"},
         "output": {"address": "/avatar/parameters/FT/v2/JawOpen", "type": "Float"}},
        {"name": "v2/EyeLidLeft", "input": {"address": "/avatar/parameters/v2/EyeLidLeft", "type": "Float"},
         "output": {"address": "/avatar/parameters/v2/EyeLidLeft", "type": "Float"}},
        {"name": "FT/v2/MouthX1", "input": {"address": "/avatar/parameters/FT/v2/MouthX1", "type": "Bool"},
         "output": {"address": "/avatar/parameters/FT/v2/MouthX1", "type": "Bool"}},
        {"name": "IsLocal", "output": {"address": "/avatar/parameters/IsLocal", "type": "Bool"}},
    ]}
    d = root / "usr_00000000-0000-0000-0000-000000000000" / "Avatars"
    d.mkdir(parents=True)
    # VRChat writes these with a UTF-8 BOM
    (d / f"{avatar_id}.json").write_text(json.dumps(doc), encoding="utf-8-sig")


def test_avatar_change_resends_everything_and_its_config_limits_what_is_sent(sink, tmp_path, caplog):
    avatar = "avtr_11111111-2222-3333-4444-555555555555"
    write_avatar_config(tmp_path, avatar)
    sender = make_sender(sink, listen_port=0, avatar_config_dir=str(tmp_path))
    state = state_with(jawOpen=0.3)
    sender.send(state)
    assert len(sink.take()) > 50
    sender.send(state)
    assert sink.take() == []
    with caplog.at_level(logging.INFO):
        SimpleUDPClient("127.0.0.1", sender.listen_port).send_message("/avatar/change", avatar)
        deadline = time.monotonic() + 2
        while sender.avatar_changes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sender.avatar_id == avatar
    sender.send(state)  # same face: after an avatar change everything goes again, but only what it has
    got = dict(sink.take())
    assert set(got) == {"/avatar/parameters/FT/v2/JawOpen", "/avatar/parameters/v2/EyeLidLeft"}
    assert got["/avatar/parameters/FT/v2/JawOpen"] == pytest.approx((0.3,))
    assert any("2 face parameters" in r.getMessage() for r in caplog.records)
    assert not sender.stats()["native_eye"]  # the avatar has its own eyelid parameter
    sender.close()


def test_load_avatar_config_reads_vrchats_format(tmp_path):
    write_avatar_config(tmp_path, "avtr_x")
    params = load_avatar_config(next(tmp_path.glob("*/Avatars/avtr_x.json")))
    assert params["/avatar/parameters/FT/v2/JawOpen"] == "Float"
    assert "/avatar/parameters/IsLocal" not in params  # output-only


class FakeVrchatOscQuery(BaseHTTPRequestHandler):
    tree: dict = {}

    def do_GET(self):
        body = json.dumps(self.tree).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_oscquery_port_is_used_and_the_log_says_why(sink, caplog):
    FakeVrchatOscQuery.tree = {"FULL_PATH": "/avatar", "CONTENTS": {
        "change": {"FULL_PATH": "/avatar/change", "TYPE": "s", "VALUE": ["avtr_q"]},
        "parameters": {"FULL_PATH": "/avatar/parameters", "CONTENTS": {
            "FT": {"FULL_PATH": "/avatar/parameters/FT", "CONTENTS": {
                "v2": {"FULL_PATH": "/avatar/parameters/FT/v2", "CONTENTS": {
                    "JawOpen": {"FULL_PATH": "/avatar/parameters/FT/v2/JawOpen", "TYPE": "f", "ACCESS": 3},
                    "EyeLeftX": {"FULL_PATH": "/avatar/parameters/FT/v2/EyeLeftX", "TYPE": "f", "ACCESS": 3}}}}}}}}}
    http = ThreadingHTTPServer(("127.0.0.1", 0), FakeVrchatOscQuery)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    service = oscquery.OscQueryService("VRChat-Client-TEST", "127.0.0.1", http.server_address[1], "127.0.0.1", sink.port)
    with caplog.at_level(logging.INFO):
        sender = VrchatSender(VrchatConfig(rate_hz=0, listen_port=None), discover=lambda timeout: service)
        deadline = time.monotonic() + 3
        while sender.avatar_id is None and time.monotonic() < deadline:
            time.sleep(0.01)
    sender.send(state_with(jawOpen=0.25))
    got = dict(sink.take())
    sender.close()
    http.shutdown()
    http.server_close()
    assert set(got) == {"/avatar/parameters/FT/v2/JawOpen", "/avatar/parameters/FT/v2/EyeLeftX"}
    assert any(f"127.0.0.1:{sink.port}" in r.getMessage() and "found by OSCQuery" in r.getMessage()
               for r in caplog.records)


def test_no_oscquery_falls_back_to_9000_and_says_so(caplog):
    with caplog.at_level(logging.INFO):
        sender = VrchatSender(VrchatConfig(rate_hz=0, listen_port=None, discovery_timeout_s=0.1),
                              discover=lambda timeout: None)
        deadline = time.monotonic() + 2
        while "pending" in sender.port_reason and time.monotonic() < deadline:
            time.sleep(0.01)
    sender.close()
    assert sender.stats()["target"] == "127.0.0.1:9000"
    assert any("127.0.0.1:9000" in r.getMessage() and "OSCQuery found no VRChat" in r.getMessage()
               for r in caplog.records)


def test_real_mdns_discovery_never_raises():
    # Loopback only: a test sends nothing onto the network.
    found = oscquery.discover_vrchat(0.2, interfaces=["127.0.0.1"])
    assert found is None or isinstance(found, oscquery.OscQueryService)


def test_parameter_tree_flattening():
    tree = {"FULL_PATH": "/avatar/parameters", "CONTENTS": {
        "A": {"FULL_PATH": "/avatar/parameters/A", "TYPE": "f"},
        "B": {"FULL_PATH": "/avatar/parameters/B", "CONTENTS": {"C": {"FULL_PATH": "/avatar/parameters/B/C", "TYPE": "T"}}}}}
    assert oscquery.parse_parameter_tree(tree) == {"/avatar/parameters/A": "f", "/avatar/parameters/B/C": "T"}


def test_gaze_values_follow_vrcft_axes():
    v = vrchat_values(FaceState(blendshapes=np.zeros(52, np.float32), gaze_left=(0.2, 0.1), gaze_right=(0.2, 0.1)))
    assert v["EyeLeftX"] < 0 and v["EyeRightX"] < 0  # looking to the performer's left = VRCFT's -X
    assert v["EyeY"] > 0
