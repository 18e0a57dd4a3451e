"""The OpenVR companion (engine_plugins/openvr/) against a live daemon and a stand-in for ``openvr``
(tests/openvr_standin.py; SteamVR cannot run here): the panel shows what the daemon sends, its
Calibrate button reaches the control socket, and the HMD's rotation becomes the published head pose."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusSubscriber, control_request
from avatar_bridge.conventions import head_yaw_pitch_roll
from helpers import ROOT, free_port, hermetic_env, recv_face, start_daemon, stop, wait_for
from openvr_standin import OpenVRStandIn, OpenVRStandInError

PLUGIN = ROOT / "engine_plugins" / "openvr"
sys.path.insert(0, str(PLUGIN))

from avatar_bridge_openvr.app import Companion, CompanionConfig  # noqa: E402
from avatar_bridge_openvr.openvr_layer import OpenVRLayer  # noqa: E402


def hmd_matrix(yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> list[list[float]]:
    """A 3x4 OpenVR pose: the wearer turned left by ``yaw_deg`` (about +y), looking up by ``pitch_deg``."""
    r = Rotation.from_euler("YX", [yaw_deg, pitch_deg], degrees=True).as_matrix()
    return [list(r[i]) + [0.0, 1.6, 0.0][i:i + 1] for i in range(3)]


@pytest.fixture(scope="module")
def daemon():
    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon("--source", "demo", "--loop", "--headset", "--bus", bus, "--control", control)
    def answers() -> bool:
        assert proc.poll() is None, stop(proc)
        try:
            return control_request({"cmd": "ping"}, control, timeout_ms=500)["ok"]
        except TimeoutError:
            return False

    wait_for(answers, timeout=60)
    yield bus, control
    stop(proc)


@pytest.fixture
def companion(daemon):
    vr = OpenVRStandIn()
    bus, control = daemon
    c = Companion(OpenVRLayer(vr), CompanionConfig(bus=bus, control=control, redraw_hz=1000))
    yield vr, c
    c.close()
    assert vr.shut_down


def step_until(c: Companion, predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.step()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_the_panel_shows_the_state_the_daemon_sends(companion):
    vr, c = companion
    assert vr.created == [("avatar-bridge.dashboard", "avatar-bridge")]
    assert vr.settings["mouse_scale"] == (512.0, 320.0)
    assert step_until(c, lambda: c.model.view(c.clock()).face and c.model.view(c.clock()).fps > 0)
    view = c.model.view(c.clock())
    assert view.tracking and view.headset and view.face
    assert view.shapes and not [n for n, _ in view.shapes if n.startswith(("eye", "brow"))]  # never the untracked
    pixels, w, h, depth = vr.shown[-1]
    assert (w, h, depth) == (512, 320, 4) and len(set(pixels)) > 10          # a drawn RGBA panel, not a blank


def test_calibrate_click_reaches_the_control_socket(companion, daemon):
    vr, c = companion
    button = next(b for b in c.model.buttons if b.name == "calibrate")
    vr.press(button.x + button.w / 2, 320 - (button.y + button.h / 2))     # OpenVR's mouse y is from the bottom
    c.step()
    assert c.model.message == "calibrate: ok"
    status = control_request({"cmd": "calibrate.status"}, daemon[1])
    assert status.get("state") in ("collecting", "done"), status
    vr.press(5, 5)                                                            # off every button: nothing sent
    c.step()
    assert c.model.message == "calibrate: ok"


def test_the_hmd_rotation_becomes_the_published_head_pose(companion, daemon):
    vr, c = companion
    sub = BusSubscriber(daemon[0])
    try:
        vr.hmd_matrix = hmd_matrix(10.0, 0.0)     # where the wearer faces the camera
        c.step()
        button = next(b for b in c.model.buttons if b.name == "recenter")
        vr.press(button.x + 5, 320 - (button.y + 5))
        c.step()
        assert c.model.message == "recenter: ok"
        vr.hmd_matrix = hmd_matrix(40.0, 15.0)    # then turns 30 degrees to the left and looks up 15

        def published():
            c.step()
            got = recv_face(sub, 200)
            return got is not None and got[1]

        deadline, state = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            s = published()
            if s and abs(math.degrees(head_yaw_pitch_roll(s.head_rotation)[0]) - 30) < 0.5:
                state = s
                break
        assert state is not None, "the HMD's yaw never reached the bus"
        yaw, pitch, roll = (math.degrees(a) for a in head_yaw_pitch_roll(state.head_rotation))
        assert yaw == pytest.approx(30, abs=0.5) and roll == pytest.approx(0, abs=0.5)
        assert pitch == pytest.approx(-15, abs=0.5)     # ARKit's pitch: + = nose down, so looking up is -
        assert "head" not in state.untracked
        status = control_request({"cmd": "status"}, daemon[1])
        assert status["head"]["source"] == "openvr" and status["head"]["recentered"] >= 1
    finally:
        sub.close()


def test_without_steamvr_the_companion_says_so_in_one_line():
    with pytest.raises(OpenVRStandInError):
        OpenVRLayer(OpenVRStandIn(steamvr_running=False))
    proc = subprocess.run([sys.executable, "-m", "avatar_bridge_openvr", "--help"], cwd=PLUGIN,
                          capture_output=True, text=True, env=hermetic_env(PYTHONPATH=f"{ROOT}:{PLUGIN}"), timeout=60)
    assert proc.returncode == 0 and "--bus" in proc.stdout and "Recenter" in proc.stdout


def test_a_bad_head_pose_is_refused_in_one_line_and_the_daemon_goes_on(daemon):
    for bad in ({"cmd": "head.set"}, {"cmd": "head.set", "q": [0, 0, 0, 0]}, {"cmd": "head.set", "q": [1, "x", 0, 0]},
                {"cmd": "head.set", "q": [float("nan"), 0, 0, 1]}):
        reply = control_request(bad, daemon[1])
        assert reply["ok"] is False and "quaternion" in reply["error"] and "\n" not in reply["error"]
    assert control_request({"cmd": "ping"}, daemon[1])["pong"] is True
