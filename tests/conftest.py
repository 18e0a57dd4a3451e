"""Shared fixtures: free loopback endpoints, a real-face image folder, a running daemon."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import free_port

@pytest.fixture
def endpoints() -> tuple[str, str]:
    """A (bus, control) pair of loopback endpoints no other test uses."""
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph of a (smiling) face, RGB, from scikit-image's bundled samples."""
    from skimage import data
    return data.astronaut()


@pytest.fixture
def face_and_blank_dir(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """Image folder: 5 face frames, 5 frames with no face, 5 face frames (sorted by name)."""
    blank = np.full_like(astronaut, 90)
    for i in range(15):
        img = blank if 5 <= i < 10 else astronaut
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return tmp_path


def pytest_sessionfinish(session, exitstatus):
    """On CI a skipped test is a failure: a skip there means .ci/run failed to install something
    (a compiler, mono, the EGL libraries, the ICT-FaceKit data beside the clone)."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reporter.write_line(f"CI: skipped test is a failure: {report.nodeid}: {report.longrepr}", red=True)
        session.exitstatus = 1
