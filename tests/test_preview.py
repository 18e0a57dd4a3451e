"""The live preview in a real headless Chromium (Debian's, driven by Playwright) against real daemons."""

from __future__ import annotations

import subprocess
import tempfile
import time

import pytest
from playwright import sync_api as playwright_api

from conftest import free_port, start_daemon, stop, wait_for

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


def open_preview(page, daemon: PreviewDaemon) -> None:
    def up():
        try:
            page.goto(daemon.url)
            return True
        except playwright_api.Error:
            time.sleep(0.3)
            return False
    wait_for(up, timeout=60)


def test_page_from_a_running_daemon_shows_its_states_and_status(page):
    daemon = PreviewDaemon("--loop").start()
    try:
        open_preview(page, daemon)
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
