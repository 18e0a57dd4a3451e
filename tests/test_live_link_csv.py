"""Live Link Face CSV: the app's exact header and timecode, a lossless round trip, and app files replay."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusSubscriber
from avatar_bridge.cli import app
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.takes.live_link_csv import (LLF_HEADER, LiveLinkCsvConfig, LiveLinkCsvError, export_csv,
                                         format_timecode, import_csv, infer_timecode_fps, parse_timecode)
from avatar_bridge.takes.format import Take, TakeFrame, TakeHeader
from helpers import free_port, synthetic_states


# The header row of a CSV exported by Epic's Live Link Face iPhone app, as published by the public
# tools that import it (e.g. the Blender/Python importers built on PyLiveLinkFace).
APP_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll")


def app_fixture(path, rows: int = 90) -> np.ndarray:
    """Write a CSV the way the app does (60 fps timecode hh:mm:ss:ff.mmm from 14:03:52:28.207);
    returns the JawOpen column written."""
    names = APP_HEADER.split(",")
    jaw = np.round(0.5 + 0.4 * np.sin(np.arange(rows) / 10.0), 6)
    lines = [APP_HEADER]
    for n in range(rows):
        frame = 28 + n
        sec, ff = 52 + frame // 60, frame % 60
        values = ["0"] * 61
        values[names.index("JawOpen") - 2] = f"{jaw[n]:.6f}"
        values[names.index("EyeBlinkLeft") - 2] = "0.031"
        values[names.index("HeadYaw") - 2] = "0.05"        # 9 degrees, Unreal units (deg / 180)
        lines.append(f"14:03:{sec:02d}:{ff:02d}.207,61," + ",".join(values))
    path.write_text("\n".join(lines) + "\n")
    return jaw


def test_header_is_the_apps_exact_header():
    assert ",".join(LLF_HEADER) == APP_HEADER


def test_timecode_is_hours_minutes_seconds_and_fractional_frames():
    seconds = 14 * 3600 + 3 * 60 + 52 + 28.207 / 60
    assert format_timecode(seconds, 60) == "14:03:52:28.207"
    assert format_timecode(3.0 + 5 / 30, 30) == "00:00:03:05.000"
    assert parse_timecode("14:03:52:28.207") == (14, 3, 52, 28.207)
    with pytest.raises(LiveLinkCsvError, match="hh:mm:ss:ff.mmm"):
        parse_timecode("14:03:52.28")
    # Epic's importer: 60 fps as soon as any frame number exceeds 30
    assert infer_timecode_fps([0, 12.5, 29.9]) == 30 and infer_timecode_fps([3, 31.2]) == 60


def test_export_then_import_gives_the_same_values(tmp_path):
    states = synthetic_states(75, fps=60.0)
    frames = [TakeFrame(i, s, i / 60.0) for i, s in enumerate(states)]
    take = Take(tmp_path / "t.abr", TakeHeader(fps=60.0, start_time="2024-05-01T23:59:59.500+02:00"), frames)
    path = tmp_path / "t.csv"
    assert export_csv(take, path) == 75
    back = import_csv(path)
    assert len(back) == 75
    np.testing.assert_array_equal(back.blendshapes, take.blendshapes)     # float32 written exactly
    np.testing.assert_allclose(back.times, take.times, atol=1e-5)          # across midnight too
    for a, b in zip(back.frames, frames):
        assert head_yaw_pitch_roll(a.state.head_rotation) == pytest.approx(
            head_yaw_pitch_roll(b.state.head_rotation), abs=1e-6)
        assert a.state.gaze_left == pytest.approx(b.state.gaze_left, abs=1e-6)
        assert a.state.gaze_right == pytest.approx(b.state.gaze_right, abs=1e-6)
        assert a.state.face_present == b.state.face_present
        assert a.state.confidence == pytest.approx(b.state.confidence, abs=1e-7)
    first = path.read_text().splitlines()[1]
    assert first.startswith("23:59:59:30.000,61,")


def test_a_frame_with_no_face_keeps_its_row_marked_by_face_detected(tmp_path):
    states = synthetic_states(10)
    frames = [TakeFrame(i, s, i / 60) for i, s in enumerate(states)]
    take = Take(tmp_path / "t.abr", TakeHeader(), frames)
    export_csv(take, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == APP_HEADER + ",FaceDetected,Confidence" and len(lines) == 11
    assert [line.split(",")[-2] for line in lines[1:]] == ["0" if i == 7 else "1" for i in range(10)]
    export_csv(take, tmp_path / "strict.csv", LiveLinkCsvConfig(tracking_columns=False))
    assert (tmp_path / "strict.csv").read_text().splitlines()[0] == APP_HEADER


def test_a_csv_in_the_apps_format_imports_and_replays_on_the_bus(tmp_path):
    path = tmp_path / "MySlate_7_iPhone.csv"
    jaw = app_fixture(path)
    take = import_csv(path)
    assert len(take) == 90 and take.header.fps == 60
    np.testing.assert_allclose(np.diff(take.times), 1 / 60, atol=1e-9)
    np.testing.assert_allclose(take.blendshapes[:, 17], jaw, atol=1e-7)
    yaw, _, _ = head_yaw_pitch_roll(take.frames[0].state.head_rotation)
    assert math.degrees(yaw) == pytest.approx(9.0, abs=1e-4)
    assert all(f.state.face_present for f in take.frames)

    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    sub = BusSubscriber(bus)
    got: list[float] = []

    def listen() -> None:
        while len(got) < 90:
            r = sub.recv(5000)
            if r is None:
                return
            got.append(wire.decode_face(r[1])[1].blendshapes[17])

    listener = threading.Thread(target=listen)
    listener.start()
    result = CliRunner().invoke(app, ["replay", str(path), "--bus", bus, "--control", control])
    listener.join(10)
    sub.close()
    assert result.exit_code == 0, result.output
    assert "sent 90 frames" in result.output
    np.testing.assert_allclose(got, jaw, atol=1e-6)


def test_a_csv_that_is_not_live_link_face_is_refused_clearly(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("time,jaw\n0,0.5\n")
    with pytest.raises(LiveLinkCsvError, match="other.csv is not a Live Link Face CSV"):
        import_csv(path)
    path.write_text(APP_HEADER + "\n14:00:00:01.000,61,0.5\n")
    with pytest.raises(LiveLinkCsvError, match="line 2 has 3 columns"):
        import_csv(path)
