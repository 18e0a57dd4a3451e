"""Frame sources: files, folders, looping, and a camera that disappears (a mock camera: there is
no camera device on the test machines)."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from avatar_bridge.tracking import sources
from avatar_bridge.tracking.sources import SourceConfig, SourceError, demo_clip_path, open_source


class MockCamera:
    """Stands in for cv2.VideoCapture(index): delivers frames, then unplugs for ``gone_reads`` reads
    (every reopen fails while unplugged), then comes back."""

    unplugged_until = 0.0
    opened = 0

    def __init__(self, index: int) -> None:
        MockCamera.opened += 1
        self._open = time.monotonic() >= MockCamera.unplugged_until
        self.reads = 0

    def isOpened(self) -> bool:
        return self._open

    def set(self, *args) -> bool:
        return True

    def get(self, prop) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        self.reads += 1
        if self.reads == 5 and MockCamera.opened == 1:   # unplug after the 4th frame of the first session
            MockCamera.unplugged_until = time.monotonic() + 0.8
        if time.monotonic() < MockCamera.unplugged_until:
            return False, None
        return True, np.zeros((48, 64, 3), np.uint8)

    def release(self) -> None:
        self._open = False


def test_camera_that_disappears_is_reopened_and_frames_continue(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", MockCamera)
    MockCamera.unplugged_until, MockCamera.opened = 0.0, 0
    camera = open_source(SourceConfig(spec="camera:0"))
    got = []

    def consume():
        for frame in camera.frames():
            got.append(frame)
            if len(got) >= 10:
                camera.stop()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive() and len(got) >= 10
    assert camera.reconnects >= 1
    assert [f.index for f in got] == list(range(len(got)))
    assert got[0].image.shape == (48, 64, 3)


def test_missing_camera_says_how_to_find_one(monkeypatch):
    class NoCamera(MockCamera):
        def isOpened(self) -> bool:
            return False

    monkeypatch.setattr(sources.cv2, "VideoCapture", NoCamera)
    with pytest.raises(SourceError, match="avatar-bridge devices"):
        open_source(SourceConfig(spec="camera:3"))


def test_video_file_keeps_its_own_timing_when_read_as_fast_as_possible():
    frames = list(open_source(SourceConfig(spec=str(demo_clip_path()), realtime=False)).frames())
    assert len(frames) == 180
    dt = np.diff([f.t_capture for f in frames])
    assert np.allclose(dt, 1 / 30, atol=1e-3)


def test_looping_a_folder_keeps_time_increasing(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    it = open_source(SourceConfig(spec=str(tmp_path), realtime=False, loop=True, fps=10.0)).frames()
    frames = [next(it) for _ in range(7)]
    assert [f.index for f in frames] == list(range(7))
    assert np.all(np.diff([f.t_capture for f in frames]) > 0)
    assert frames[3].image[0, 0, 0] == 0, "the folder restarts from its first image"


def test_realtime_pacing_follows_the_frame_rate(tmp_path):
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    start = time.monotonic()
    frames = list(open_source(SourceConfig(spec=str(tmp_path), realtime=True, fps=20.0)).frames())
    assert len(frames) == 6
    assert time.monotonic() - start >= 5 / 20 - 0.02, "six frames at 20 fps span at least 0.25 s"


def test_a_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(SourceConfig(spec=str(bad)))


def test_a_daemon_that_cannot_start_lets_go_of_the_camera_and_its_bus(monkeypatch, endpoints, tmp_path):
    """The control port is taken: the daemon says so, and the (mock) camera it had opened and the
    bus socket it had bound are released, so the caller can fix the port and try again."""
    import zmq

    from avatar_bridge.bus.sockets import BusConfig
    from avatar_bridge.runtime.daemon import Daemon, DaemonConfig
    from avatar_bridge.runtime.pipeline import PipelineConfig

    cameras: list[MockCamera] = []
    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda i: cameras.append(MockCamera(i)) or cameras[-1])
    MockCamera.unplugged_until = 0.0
    bus, control = endpoints
    ctx = zmq.Context.instance()
    squatter = ctx.socket(zmq.REP)
    squatter.bind(control)
    try:
        config = DaemonConfig(source=SourceConfig(spec="camera:0"), pipeline=PipelineConfig(estimator="geometry"),
                              bus=BusConfig(pub_endpoint=bus, control_endpoint=control), profile_dir=str(tmp_path))
        with pytest.raises(Exception, match=control.rsplit(":", 1)[-1]):
            Daemon(config)
    finally:
        squatter.close(linger=0)
    assert len(cameras) == 1 and not cameras[0].isOpened()
    s = ctx.socket(zmq.PUB)
    s.bind(bus)             # EADDRINUSE if the failed daemon kept its bus socket
    s.close(linger=0)
