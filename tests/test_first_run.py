"""What a new user sees on a fresh clone: quiet output, a live status line, and commands that say what
is going on instead of hanging or printing library noise. Every test runs the real CLI as a subprocess."""

from __future__ import annotations

import re
import subprocess

from avatar_bridge.cli.native_logs import is_noise
from helpers import cli, hermetic_env


NATIVE_NOISE = re.compile(r"^(W0000|I0000|\[ WARN:|\[ERROR:|WARNING: All log messages before absl)", re.M)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env=hermetic_env())


def test_run_is_quiet_and_prints_a_status_line_with_fps_face_estimator_profile_and_dropped(endpoints):
    bus, control = endpoints
    result = run_cli("run", "--max-frames", "45", "--bus", bus, "--control", control)
    assert result.returncode == 0, result.stderr
    assert not NATIVE_NOISE.search(result.stdout + result.stderr), result.stderr
    status = [line for line in result.stdout.splitlines() if " fps · " in line]
    assert status, result.stdout
    assert re.search(r"\d+\.\d fps · face in 100% of frames · estimator landmarks · profile default · dropped \d+ · "
                     r"45 frames sent", status[-1]), status[-1]
    assert "dropped = camera frames skipped" in result.stdout
    assert "calibration profile: default (none saved" in result.stdout


def test_verbose_brings_mediapipe_and_opencv_messages_back(endpoints):
    bus, control = endpoints
    result = run_cli("--verbose", "run", "--max-frames", "5", "--bus", bus, "--control", control)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^W0000 .*\.cc:\d+\]", result.stderr, re.M), result.stderr


def test_devices_without_a_camera_says_so_without_opencv_probe_lines():
    result = run_cli("devices")
    assert "no camera found" in result.stdout
    assert not NATIVE_NOISE.search(result.stdout + result.stderr), result.stderr
    verbose = run_cli("--verbose", "devices")
    assert "[ WARN:" in verbose.stderr or "[ERROR:" in verbose.stderr, verbose.stderr


def test_only_known_noise_is_filtered_so_native_errors_still_show():
    assert is_noise(b"W0000 00:00:1796242373.615251   20263 inference_feedback_manager.cc:114] Feedback\n")
    assert is_noise(b"[ WARN:0@0.318] global cap_v4l.cpp:913 open VIDEOIO(V4L2:/dev/video0)\n")
    assert not is_noise(b"E0000 00:00:1796242373.615251   20263 calculator_graph.cc:887] INTERNAL: failed\n")
    assert not is_noise(b"F0000 00:00:1796242373.615251   20263 check failed\n")
    assert not is_noise(b"Segmentation fault\n")


def test_listen_without_a_daemon_says_so_after_two_seconds_and_keeps_waiting(endpoints):
    result = run_cli("listen", "--bus", endpoints[0], "--timeout", "4")
    assert f"no daemon on {endpoints[0]} yet" in result.stderr, result.stderr
    assert "still waiting" in result.stderr
    assert "nothing heard" in result.stderr and result.returncode == 1   # it waited on to --timeout


def write_still_take(path, yaw_deg: float, pitch_deg: float, roll_deg: float, n: int = 90, fps: float = 30.0) -> None:
    """A take of one held head pose, so what `listen` shows can be checked against it."""
    import math
    import numpy as np
    from avatar_bridge.conventions import from_yaw_pitch_roll
    from avatar_bridge.takes.format import TakeHeader, TakeWriter
    from avatar_bridge.types import FaceState
    q = from_yaw_pitch_roll(*(math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg)))
    with TakeWriter(path, TakeHeader(fps=fps, source="test")) as writer:
        for i in range(n):
            state = FaceState(blendshapes=np.full(52, 0.1, np.float32), head_rotation=tuple(q),
                              head_position=(0.0, 0.0, -0.5), gaze_left=(0.0, 0.0), gaze_right=(0.0, 0.0),
                              confidence=0.9, face_present=True, t_capture=i / fps, frame_index=i)
            writer.write(state, seq=i, t=i / fps)


def test_listen_shows_head_pose_in_degrees_and_no_dropped_none_during_a_replay(endpoints, tmp_path):
    take = tmp_path / "still.abr"
    write_still_take(take, yaw_deg=20, pitch_deg=-10, roll_deg=5)
    bus, control = endpoints
    replay = subprocess.Popen(cli("replay", str(take), "--loop", "--bus", bus, "--control", control),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=hermetic_env())
    try:
        result = run_cli("listen", "--bus", bus, "--count", "75", "--timeout", "30")
    finally:
        replay.terminate()
        replay.wait(10)
    assert result.returncode == 0, result.stderr
    assert "head yaw +20° pitch -10° roll +5°" in result.stdout, result.stdout
    assert "source replay:still.abr" in result.stdout and "replay" in result.stdout.split("source")[-1]
    assert "None" not in result.stdout


def test_record_with_a_duration_and_no_daemon_stops_says_so_and_writes_no_empty_take(endpoints, tmp_path):
    take = tmp_path / "t.abr"
    result = run_cli("record", str(take), "--duration", "1", "--bus", endpoints[0], "--control", endpoints[1])
    assert result.returncode == 1
    assert f"no face messages arrived on {endpoints[0]} (no daemon there), so nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert not take.exists()


def test_a_text_file_given_as_a_take_is_described_as_text_not_as_python_bytes(tmp_path):
    notes = tmp_path / "notes.abr"
    notes.write_text("hello there, this is not a take\n")
    result = run_cli("inspect", str(notes))
    assert result.returncode == 1
    assert 'it begins with the text "hello there,"' in result.stderr, result.stderr
    assert "b'" not in result.stderr and "Traceback" not in result.stderr


def test_plot_writes_beside_the_take_under_its_name_and_will_not_overwrite_silently(tmp_path):
    take = tmp_path / "smile.abr"
    write_still_take(take, 0, 0, 0, n=30)
    first = run_cli("plot", str(take))
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "smile.png").stat().st_size > 0 and not (tmp_path / "take.png").exists()
    again = run_cli("plot", str(take))
    assert again.returncode == 1 and "smile.png already exists" in again.stderr and "--overwrite" in again.stderr
    assert run_cli("plot", str(take), "--overwrite").returncode == 0


def test_inspect_does_not_name_a_profile_that_was_never_saved(tmp_path):
    take = tmp_path / "demo.abr"
    processed = run_cli("process", "demo", "--out", str(take), "--max-frames", "10")
    assert processed.returncode == 0, processed.stderr
    result = run_cli("inspect", str(take))
    assert "calibration profile: none (raw values" in result.stdout, result.stdout
    assert "calibration profile: default" not in result.stdout


def test_help_shows_brackets_in_text_no_bool_placeholders_and_demo_for_process():
    run_help = run_cli("run", "--help").stdout
    assert "[source], [bus], [pipeline]" in run_help
    assert "<bool>" not in run_help and "--mirror " in run_help
    assert re.search(r"--smoothing on\|off", run_help), run_help
    assert "demo (the built-in clip)" in " ".join(run_cli("process", "--help").stdout.split())


def test_doctor_names_the_flag_each_command_really_takes(endpoints):
    result = subprocess.run(cli("doctor", "--skip-camera", "--adapters", "vrchat", "--bus", endpoints[0],
                                "--control", endpoints[1]), capture_output=True, text=True, timeout=120,
                            env={**hermetic_env(), "COLUMNS": "300"})
    assert "run --vrchat-port N (bridge vrchat --port N)" in result.stdout, result.stdout
    assert "pass --port" not in result.stdout


def test_ctrl_c_during_process_keeps_the_frames_and_inspect_says_the_take_is_incomplete(tmp_path, astronaut):
    import signal
    import time
    import cv2
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0000.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    for i in range(1, 3000):      # far more than can be processed before the interrupt
        (frames / f"{i:04d}.png").symlink_to(frames / "0000.png")
    take = tmp_path / "part.abr"
    proc = subprocess.Popen(cli("process", str(frames), "--out", str(take)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=hermetic_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (take.exists() and take.stat().st_size > 4000):
        time.sleep(0.1)          # until frames are on disk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "stopped by Ctrl-C after" in err and "marked incomplete" in err and "Traceback" not in err, err
    result = run_cli("inspect", str(take))
    assert re.search(r"incomplete: interrupted after \d+ of 3000 frames", result.stdout), result.stdout


def test_on_a_terminal_the_status_line_is_redrawn_in_place(endpoints):
    import os
    import pty
    bus, control = endpoints
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cli("run", "--max-frames", "75", "--bus", bus, "--control", control), stdout=follower,
                            stderr=follower, env={**hermetic_env(), "TERM": "xterm", "COLUMNS": "200"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:          # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(leader)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert out.count(" fps · ") >= 2 and "\x1b[2K" in out, out     # redrawn (erase line), not appended
    assert not NATIVE_NOISE.search(out), out
