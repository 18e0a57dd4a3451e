"""Record a live bus, replay it: same values, same order, original timing, nothing lost."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusConfig, BusPublisher, BusSubscriber, ControlServer, control_request
from avatar_bridge.takes.recorder import Recorder, RecorderConfig, RecordingControl
from avatar_bridge.takes.replay import ReplayConfig, ReplayError, Replayer, TakePosition, select_frames
from avatar_bridge.takes.format import TakeFrame, read_take
from helpers import free_port, synthetic_states



def endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def publish_at(pub: BusPublisher, states, fps: float) -> None:
    """Publish on a fixed schedule (not sleep-after-send), like a camera-paced daemon."""
    start = time.monotonic()
    for i, s in enumerate(states):
        delay = start + i / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.publish_face(s)


def record_live(tmp_path, states, fps: float):
    bus = endpoint()
    pub = BusPublisher(BusConfig(pub_endpoint=bus, control_endpoint=""))
    try:
        recorder = Recorder(RecorderConfig(path=str(tmp_path / "live.abr"), bus_endpoint=bus, fps=fps)).start()
        assert recorder.connected.is_set()
        publish_at(pub, states, fps)
        summary = recorder.stop()
    finally:
        pub.close()
    return summary, read_take(tmp_path / "live.abr")


@pytest.mark.parametrize("fps,n", [(60, 300), (500, 1000)])
def test_recording_loses_no_frame_at_60_fps_and_beyond(tmp_path, fps, n):
    states = synthetic_states(n, fps)
    summary, take = record_live(tmp_path, states, fps)
    assert summary.frames == n and summary.gaps == 0 and summary.malformed == 0, summary.describe()
    assert [f.seq for f in take.frames] == list(range(n))
    for f, s in zip(take.frames, states):
        np.testing.assert_array_equal(f.state.blendshapes, s.blendshapes)
    assert take.end["gaps"] == 0 and take.complete
    assert summary.duration_s == pytest.approx((n - 1) / fps, rel=0.1)
    assert "no sequence gaps" in summary.describe()


def test_recorder_counts_gaps_in_seq(tmp_path):
    bus = endpoint()
    pub = BusPublisher(BusConfig(pub_endpoint=bus, control_endpoint=""))
    try:
        recorder = Recorder(RecorderConfig(path=str(tmp_path / "gappy.abr"), bus_endpoint=bus)).start()
        for i, s in enumerate(synthetic_states(20)):
            if i in (5, 12):
                pub.seq += 2 if i == 5 else 1   # the daemon published these while we could not hear them
            pub.publish_face(s)
            time.sleep(0.002)
        summary = recorder.stop()
    finally:
        pub.close()
    assert summary.frames == 20 and summary.gaps == 3 and summary.gap_events == 2
    assert "2 sequence gap(s) on the bus, 3 message(s) missing" in summary.describe()


def test_replay_of_a_recorded_take_reproduces_values_order_and_timing(tmp_path):
    fps = 60.0
    states = synthetic_states(120, fps)
    _, take = record_live(tmp_path, states, fps)

    bus = endpoint()
    pub = BusPublisher(BusConfig(pub_endpoint=bus, control_endpoint=""))
    sub = BusSubscriber(bus)
    got: list[tuple[float, int, np.ndarray]] = []

    def listen() -> None:
        while len(got) < len(take):
            r = sub.recv(3000)
            if r is None:
                return
            seq, state = wire.decode_face(r[1])
            got.append((time.monotonic(), seq, state.blendshapes))

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.3)  # slow joiner: let the subscription reach the publisher
    summary = Replayer(take.frames, ReplayConfig(), [pub.publish_face]).run()
    listener.join(10)
    pub.close()
    sub.close()

    assert summary.frames_sent == len(got) == 120
    assert [g[1] for g in got] == list(range(120))
    for g, s in zip(got, states):
        np.testing.assert_array_equal(g[2], s.blendshapes)
    # Timing, relative to the stream's own start (the median offset): the median frame lands within a
    # tenth of a frame interval (1.7 ms at 60 fps) of where the recording put it, 95% within half an
    # interval (in their own frame slot), and the whole take lasts as long as recorded, within one interval.
    # Half an interval is what an avatar app sampling at the camera rate can tell apart at all.
    recorded = take.times - take.times[0]
    arrived = np.array([g[0] for g in got]) - got[0][0]
    err = arrived - recorded
    err -= np.median(err)
    interval = 1 / fps
    assert np.median(np.abs(err)) < 0.1 * interval, np.median(np.abs(err))
    assert np.percentile(np.abs(err), 95) < 0.5 * interval, np.percentile(np.abs(err), 95)
    assert abs(arrived[-1] - recorded[-1]) < interval


def _frames(n: int, fps: float = 60.0) -> list[TakeFrame]:
    return [TakeFrame(i, s, i / fps) for i, s in enumerate(synthetic_states(n, fps))]


def test_from_and_to_select_by_seconds_or_frames_half_open():
    frames = _frames(120)
    assert [f.seq for f in select_frames(frames, TakePosition.parse("0.5"), TakePosition.parse("1s"))] == \
        list(range(30, 60))
    assert [f.seq for f in select_frames(frames, TakePosition.parse("100f"))] == list(range(100, 120))
    with pytest.raises(ReplayError, match="selects no frames"):
        select_frames(frames, TakePosition.parse("90f"), TakePosition.parse("1s"))
    with pytest.raises(ReplayError, match="150f"):
        TakePosition.parse("1.5f")


def test_speed_scales_timing_and_loop_repeats():
    frames = _frames(31)                      # 0.5 s at 60 fps
    sent: list[float] = []
    t0 = time.monotonic()
    Replayer(frames, ReplayConfig(speed=2.0), [lambda s: sent.append(time.monotonic())]).run()
    assert len(sent) == 31 and sent[-1] - t0 == pytest.approx(0.25, abs=0.03)

    seen: list[int] = []
    stop = threading.Event()

    def sink(state) -> None:
        seen.append(state.frame_index)
        if len(seen) == 70:
            stop.set()

    summary = Replayer(frames, ReplayConfig(speed=4.0, loop=True), [sink]).run(stop)
    assert seen[:62] == list(range(31)) * 2 and summary.passes == 2


def test_daemon_control_socket_starts_and_stops_a_recording(tmp_path):
    bus, control = endpoint(), endpoint()
    pub = BusPublisher(BusConfig(pub_endpoint=bus, control_endpoint=control))
    recording = RecordingControl(bus, take_dir=tmp_path, header_provider=lambda: {"source": "demo", "fps": 30})
    server = ControlServer(BusConfig(pub_endpoint=bus, control_endpoint=control), recording.handlers())
    served = threading.Event()

    def serve() -> None:
        while not served.is_set():
            server.poll_once(20)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        reply = control_request({"cmd": "record.start", "path": "ctl.abr"}, control)
        assert reply["ok"] and reply["recording"] and reply["path"].endswith("ctl.abr")
        again = control_request({"cmd": "record.start", "path": "other.abr"}, control)
        assert not again["ok"] and "already recording" in again["error"]
        publish_at(pub, synthetic_states(60, 60.0), 60.0)
        status = control_request({"cmd": "record.status"}, control)
        assert status["recording"] and status["path"].endswith("ctl.abr")
        reply = control_request({"cmd": "record.stop"}, control, timeout_ms=10000)
        assert reply["ok"] and reply["frames"] == 60 and reply["gaps"] == 0, reply
        assert "wrote 60 frames" in reply["summary"]
        assert not control_request({"cmd": "record.stop"}, control)["ok"]
    finally:
        served.set()
        thread.join(5)
        server.close()
        pub.close()
    take = read_take(tmp_path / "ctl.abr")
    assert len(take) == 60 and take.header.source == "demo" and take.header.fps == 30
