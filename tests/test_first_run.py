"""What a new user sees on a fresh clone: quiet output, a live status line, and commands that say what
is going on instead of hanging or printing library noise. Every test runs the real CLI as a subprocess."""

from __future__ import annotations

import re
import subprocess

from avatar_bridge.cli.native_logs import is_noise

from conftest import cli, hermetic_env

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
    assert re.search(r"\d+\.\d fps · face in 100% of frames · estimator neural · profile default · dropped \d+ · "
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
