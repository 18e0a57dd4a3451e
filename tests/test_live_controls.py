"""The control commands the preview page drives, on a real in-process daemon over its real control
socket: signal.get/signal.set (mirror, smoothing per group) and camera.frame."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from avatar_bridge.bus.sockets import BusConfig, control_request
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.runtime.camera_view import CameraView, CameraViewConfig, CameraViewError
from avatar_bridge.runtime.daemon import Daemon, DaemonConfig
from avatar_bridge.runtime.pipeline import PipelineConfig
from avatar_bridge.signal.chain import SignalChainConfig
from avatar_bridge.tracking.sources import SourceConfig

from helpers import next_faces


@pytest.fixture
def running(endpoints, tmp_path, astronaut):
    """A daemon on a folder of one real photograph, looped at 15 fps, without smoothing so each
    published state is that frame's own."""
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "000.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    bus, control = endpoints
    daemon = Daemon(DaemonConfig(source=SourceConfig(spec=str(frames), loop=True, fps=15.0),
                                 pipeline=PipelineConfig(estimator="geometry"),
                                 bus=BusConfig(pub_endpoint=bus, control_endpoint=control),
                                 signal=SignalChainConfig(smoothing=False), profile_dir=str(tmp_path)))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    yield bus, control
    daemon.stop()
    thread.join(timeout=10)


def ask(control: str, **req) -> dict:
    return control_request(req, control, timeout_ms=5000)


def test_signal_set_changes_a_groups_smoothing_and_status_reports_it(running):
    bus, control = running
    before = ask(control, cmd="signal.get")
    assert before["ok"] and before["filter"]["mouth"]["min_cutoff"] == pytest.approx(SignalChainConfig().mouth.min_cutoff)
    reply = ask(control, cmd="signal.set", smoothing=True, filter={"mouth": {"min_cutoff": 2.5, "beta": 7.0}})
    assert reply["ok"] and reply["smoothing"] is True
    assert reply["filter"]["mouth"] == {"min_cutoff": 2.5, "beta": 7.0, "d_cutoff": SignalChainConfig().mouth.d_cutoff,
                                        "snap": SignalChainConfig().mouth.snap}
    assert reply["filter"]["eyes"] == before["filter"]["eyes"], "other groups are untouched"
    status = ask(control, cmd="status")
    assert status["smoothing"] is True and status["signal"]["filter"]["mouth"]["min_cutoff"] == 2.5
    assert len(next_faces(bus, 5)) == 5, "frames keep flowing"


def test_mirror_switched_at_run_time_flips_the_published_yaw(running):
    bus, control = running
    yaw = np.median([head_yaw_pitch_roll(m["head"]["q"])[0] for m in next_faces(bus, 5)])
    assert abs(np.degrees(yaw)) > 1, "the photograph's head is turned a little"
    assert ask(control, cmd="signal.set", mirror=True)["mirror"] is True
    time.sleep(0.3)
    mirrored = np.median([head_yaw_pitch_roll(m["head"]["q"])[0] for m in next_faces(bus, 5)])
    assert mirrored == pytest.approx(-yaw, abs=np.radians(0.5))


@pytest.mark.parametrize("req, words", [
    ({"filter": {"mouth": {"min_cutoff": -1}}}, "out of range"),
    ({"filter": {"nose": {"beta": 1}}}, "unknown filter group"),
    ({"filter": {"mouth": {"speed": 1}}}, "unknown filter parameter"),
    ({"mirror": "yes"}, "true or false"),
    ({"volume": 11}, "not volume"),
])
def test_bad_signal_set_is_a_one_line_error_and_changes_nothing(running, req, words):
    _, control = running
    before = ask(control, cmd="signal.get")
    reply = ask(control, cmd="signal.set", **req, **({"smoothing": True} if "mirror" not in req else {}))
    assert reply["ok"] is False and words in reply["error"] and "\n" not in reply["error"]
    after = ask(control, cmd="signal.get")
    assert {k: v for k, v in after.items() if k != "ok"} == {k: v for k, v in before.items() if k != "ok"}


def test_camera_frame_is_the_newest_image_with_its_478_landmarks(running, astronaut):
    _, control = running
    time.sleep(0.5)
    reply = ask(control, cmd="camera.frame")
    assert reply["ok"] and reply["face"] and reply["frame"] >= 0
    image = cv2.imdecode(np.frombuffer(reply["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (reply["height"], reply["width"], 3) and reply["width"] == 480
    h, w = astronaut.shape[:2]
    assert reply["height"] == round(h * 480 / w), "scaled down, aspect kept"
    points = np.array(reply["landmarks"]).reshape(-1, 2)
    assert points.shape == (478, 2) and ((points > 0) & (points < 1)).all()
    # The astronaut's face is in the upper middle of the photograph.
    cx, cy = points.mean(axis=0)
    assert 0.3 < cx < 0.7 and 0.1 < cy < 0.5


def test_camera_frames_are_refused_on_a_control_socket_open_to_the_network():
    view = CameraView(CameraViewConfig(), "tcp://0.0.0.0:5571")
    with pytest.raises(CameraViewError, match="loopback"):
        view.frame({})
    assert CameraView(CameraViewConfig(), "tcp://127.0.0.1:5571").frame({})["jpeg"] is None, "no frame yet"
