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
from avatar_bridge.bus.sockets import control_request
from avatar_bridge.takes.format import TakeHeader, TakeWriter
from avatar_bridge.types import FaceState
from helpers import cli, free_port, hermetic_env, start_daemon, stop, wait_for

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
        page.screenshot(path=str(tmp_path / "jaw.png"))   # mid-expression: the jaw half open
        stop(replay)
        page.locator("#banner-gone").wait_for(state="visible", timeout=10000)
    finally:
        out = stop(preview) + stop(replay)
    influences = [m for m, _, _ in samples]
    assert max(influences) - min(influences) > 0.3, f"the jaw should open and close: {samples}"
    for influence, frame, bus_value in samples:
        assert abs(bus_value - jaw_at(frame)) < 1e-4, "the page received the take's value for that frame"
        assert abs(influence - bus_value) < 1e-3, f"the head shows frame {frame}'s jaw: {influence} vs {bus_value}"
    assert "preview on" in out, out


def test_controls_reach_the_daemon_and_the_camera_view_appears_only_when_switched_on(page, tmp_path):
    daemon = PreviewDaemon("--loop").start()
    try:
        open_preview(page, daemon.url)
        wait_for(lambda: js(page, "preview.statesDrawn > 5 && preview.signal !== null"), timeout=30)

        page.click("#calibrate-neutral")
        state = wait_for(lambda: control_request({"cmd": "calibrate.status"}, daemon.control)["state"] or None)
        assert state in ("collecting", "done"), "the click started a calibration in the daemon"
        page.locator("#calibrate-msg").filter(has_text="calibrat").wait_for(timeout=10000)

        page.fill("#smooth-mouth-min_cutoff", "800")      # log slider: 0.05 * 100 ** 0.8 Hz
        expected = round(0.05 * 100 ** 0.8, 3)
        wait_for(lambda: control_request({"cmd": "signal.get"}, daemon.control)["filter"]["mouth"]["min_cutoff"]
                 == pytest.approx(expected), timeout=10)
        page.check("#mirror")
        wait_for(lambda: control_request({"cmd": "status"}, daemon.control)["signal"]["mirror"] is True, timeout=10)

        time.sleep(0.5)
        assert page.locator("#camera-box").is_hidden() and js(page, "preview.cameraFrames") == 0, \
            "no camera frame reaches the page while the view is off"
        page.check("#camera-toggle")
        wait_for(lambda: js(page, "preview.cameraFrames") >= 3, timeout=20)
        assert page.locator("#camera-box").is_visible()
        assert js(page, "preview.camera.landmarks") == 478
        green = js(page, """(() => { const c = document.getElementById('camera');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0, other = 0;
            for (let i = 0; i < d.length; i += 4) {
              if (d[i] < 60 && d[i + 1] > 200 && d[i + 2] < 140) n++; else if (d[i] + d[i + 1] + d[i + 2] > 60) other++; }
            return [n, other]; })()""")
        assert green[0] > 300 and green[1] > 10000, f"an image with landmark dots drawn on it: {green}"
        page.screenshot(path=str(tmp_path / "preview.png"))
        page.uncheck("#camera-toggle")
        frames = js(page, "preview.cameraFrames")
        time.sleep(0.6)
        assert js(page, "preview.cameraFrames") == frames and page.locator("#camera-box").is_hidden()
    finally:
        daemon.stop()


def test_stopping_the_daemon_shows_the_banner_and_a_restart_resumes_without_a_reload(page):
    daemon = PreviewDaemon("--loop").start()
    try:
        open_preview(page, daemon.url)
        wait_for(lambda: js(page, "preview.statesDrawn") > 5, timeout=30)
        js(page, "(window.notReloaded = true)")
        daemon.stop()
        page.locator("#banner-gone").wait_for(state="visible", timeout=10000)
        drawn = js(page, "preview.statesDrawn")
        daemon.start()
        page.locator("#banner-gone").wait_for(state="hidden", timeout=60000)
        wait_for(lambda: js(page, "preview.statesDrawn") > drawn + 5, timeout=30)
        assert js(page, "window.notReloaded") is True, "the same page went on, it was not reloaded"
    finally:
        daemon.stop()
