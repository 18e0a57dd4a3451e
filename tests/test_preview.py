"""The live preview in a real headless Chromium (Debian's, driven by Playwright) against real daemons."""

from __future__ import annotations

import math
import subprocess
import tempfile
import time

import numpy as np
import pytest
from playwright import sync_api as playwright_api

from avatar_bridge.arkit import INDEX
from avatar_bridge.takes.format import TakeHeader, TakeWriter
from avatar_bridge.types import FaceState
from conftest import cli, free_port, hermetic_env, start_daemon, stop, wait_for

CHROMIUM = "/usr/bin/chromium"
# What works headless here: no sandbox (root in CI), software WebGL, nothing phoning home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="ab-chromium-"), headless=True,
                                                       executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1400, "height": 900})
        yield context
        context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"the page threw: {errors}"


def background(*args: str) -> subprocess.Popen:
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=hermetic_env())


def jaw_at(frame: int) -> float:
    """The known jaw motion of the test take: two seconds per open-close cycle at 30 fps."""
    return 0.5 - 0.45 * math.cos(2 * math.pi * frame / 60)


@pytest.fixture
def jaw_take(tmp_path):
    path = tmp_path / "jaw.abr"
    with TakeWriter(path, TakeHeader(fps=30.0, source="test: known jaw motion")) as w:
        for i in range(180):
            bs = np.zeros(52, np.float32)
            bs[INDEX["jawOpen"]] = jaw_at(i)
            w.write(FaceState(blendshapes=bs, face_present=True, confidence=1.0, frame_index=i, t_capture=i / 30),
                    seq=i, t=i / 30)
    return path


class PreviewDaemon:
    """``avatar-bridge run --preview`` as a subprocess on free ports."""

    def __init__(self, *args: str) -> None:
        self.bus, self.control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "PreviewDaemon":
        self.proc = start_daemon("--bus", self.bus, "--control", self.control, "--estimator", "geometry",
                                 "--preview", "--no-browser", "--preview-port", str(self.port), *self.args)
        return self

    def stop(self) -> str:
        return stop(self.proc) if self.proc else ""


def js(page, expr: str):
    return page.evaluate(f"() => {expr}")


def open_preview(page, url: str) -> None:
    def up():
        try:
            page.goto(url)
            return True
        except playwright_api.Error:
            time.sleep(0.3)
            return False
    wait_for(up, timeout=60)


def test_page_from_a_running_daemon_shows_its_states_and_status(page):
    daemon = PreviewDaemon("--loop").start()
    try:
        open_preview(page, daemon.url)
        wait_for(lambda: js(page, "preview.statesDrawn") > 10, timeout=30)
        seq = int(page.text_content("#seq"))
        wait_for(lambda: int(page.text_content("#seq")) > seq, timeout=10)
        wait_for(lambda: page.text_content("#estimator") == "geometry", timeout=10)
        assert page.text_content("#source") == "demo"
        assert float(page.text_content("#fps")) > 0
        assert page.locator("#stages tr").count() >= 3, "per-stage latency rows from status"
        widths = js(page, "[...document.querySelectorAll('.bar .fill')].map(e => e.getBoundingClientRect().width)")
        assert len(widths) == 52 and max(widths) > 0, "bars show the coefficients"
        assert page.locator("#banner-gone").is_hidden()
    finally:
        out = daemon.stop()
    assert "preview on http://127.0.0.1:" in out, out


def test_head_jaw_follows_the_bus_while_a_take_replays(page, jaw_take, tmp_path):
    bus, control, port = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", free_port()
    replay = background("replay", str(jaw_take), "--loop", "--bus", bus, "--control", control)
    preview = background("preview", "--bus", bus, "--control", control, "--preview-port", str(port), "--no-browser")
    try:
        open_preview(page, f"http://127.0.0.1:{port}/")
        wait_for(lambda: js(page, "preview.morphMeshes.length > 0 && preview.drawn !== null"), timeout=30)
        samples = []
        for _ in range(40):
            samples.append(js(page, "[preview.morph('jawOpen'), preview.drawn.frame, preview.drawn.bs[%d]]"
                              % INDEX["jawOpen"]))
            time.sleep(0.05)
        page.screenshot(path=str(tmp_path / "jaw.png"))
    finally:
        out = stop(preview) + stop(replay)
    influences = [m for m, _, _ in samples]
    assert max(influences) - min(influences) > 0.3, f"the jaw should open and close: {samples}"
    for influence, frame, bus_value in samples:
        assert abs(bus_value - jaw_at(frame)) < 1e-4, "the page received the take's value for that frame"
        assert abs(influence - bus_value) < 1e-3, f"the head shows frame {frame}'s jaw: {influence} vs {bus_value}"
    assert "preview on" in out, out
