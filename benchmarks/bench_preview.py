"""What the live preview costs the daemon: median per-frame time (tracking to publish) with and
without the preview, side by side in one run, alternating so drift on a shared machine hits both.

    python benchmarks/bench_preview.py [--frames 300] [--rounds 2] [--estimator geometry]

"preview + tab" is ``run --preview`` as shipped (the server thread in the daemon's process) with one
connected tab that receives every state (a WebSocket client in its own process: the server's whole
work without a browser's drawing). "+ camera view" has that tab's camera view on too; the daemon
encodes those frames between frames (printed separately: not inside a frame, but the frame loop's
time). "+ Chromium page" is a real headless Chromium drawing the page instead; on a small machine
its software WebGL competes with the daemon for the CPU, which is the browser's cost, not the
server's. Target: the preview adds under 0.2 ms to the median frame time.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from playwright.sync_api import sync_playwright

from avatar_bridge.bus.sockets import BusConfig
from avatar_bridge.preview.server import PreviewConfig, PreviewThread
from avatar_bridge.runtime.daemon import Daemon, DaemonConfig
from avatar_bridge.runtime.pipeline import PipelineConfig
from avatar_bridge.tracking.sources import SourceConfig

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# A WebSocket client in its own process standing in for a tab: counts face states until terminated.
TAB = """
import asyncio, signal, sys, aiohttp
async def main(url, camera):
    n = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        if camera:
            await ws.send_json({"id": 1, "cmd": "camera", "on": True})
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(ws.close()))
        async for msg in ws:
            n += msg.type == aiohttp.WSMsgType.BINARY
    print(n)
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(mode: str, frames: int, estimator: str, browser) -> dict[str, list[float]]:
    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    daemon = Daemon(DaemonConfig(source=SourceConfig(spec="demo", loop=True), pipeline=PipelineConfig(estimator=estimator),
                                 bus=BusConfig(pub_endpoint=bus, control_endpoint=control), max_frames=frames,
                                 profile_dir=tempfile.mkdtemp()))
    daemon.stats.window = frames + 10           # keep every frame's timings, not the status window
    camera_ms: list[float] = []
    serve = daemon.camera_view.frame

    def timed_frame(req):
        t0 = time.perf_counter()
        try:
            return serve(req)
        finally:
            camera_ms.append((time.perf_counter() - t0) * 1000)
    daemon.control.handlers["camera.frame"] = timed_frame
    preview = page = tab = None
    if mode != "daemon alone":
        port = free_port()
        preview = PreviewThread(PreviewConfig(port=port, bus_endpoint=bus, control_endpoint=control)).start()
        url = f"http://127.0.0.1:{port}/"
        if mode.startswith("+ Chromium"):
            page = browser.new_page()
            page.goto(url)
        else:   # a tab that only receives: the server's whole work, without a browser's rendering
            tab = subprocess.Popen([sys.executable, "-c", TAB, url.replace("http", "ws") + "ws",
                                    "camera" if "camera" in mode else ""], stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    thread.join()
    drawn = page.evaluate("() => preview.statesDrawn") if page else 0
    if page:
        page.close()
    if tab:
        tab.terminate()
        drawn = int(tab.communicate()[0].strip() or 0)
    if preview:
        preview.stop()
    return {"total": list(daemon.stats.timings["total"]), "camera": camera_ms, "drawn": [drawn]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per run (default 300: 10 s of the demo)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of every mode (default 2)")
    ap.add_argument("--estimator", default="geometry", help="geometry (default: the cheaper, so the preview's "
                                                           "share shows most) or neural")
    args = ap.parse_args()
    modes = ("daemon alone", "preview + tab", "+ camera view", "+ Chromium page")
    got: dict[str, dict[str, list[float]]] = {m: {"total": [], "camera": [], "drawn": []} for m in modes}
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(tempfile.mkdtemp(), headless=True,
                                                       executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(args.rounds):
            for mode in modes:
                for key, values in one_run(mode, args.frames, args.estimator, browser).items():
                    got[mode][key] += values
        browser.close()
    base = statistics.median(got["daemon alone"]["total"])
    print(f"{args.rounds} x {args.frames} frames of the demo per mode, estimator {args.estimator}")
    print(f"{'mode':<16}{'median frame ms':>17}{'p95 ms':>9}{'added ms':>10}{'states shown':>14}{'camera.frame ms':>17}")
    for mode in modes:
        t = sorted(got[mode]["total"])
        med, p95 = statistics.median(t), t[int(0.95 * (len(t) - 1))]
        cam = f"{statistics.median(got[mode]['camera']):.2f}" if got[mode]["camera"] else "-"
        print(f"{mode:<16}{med:>17.3f}{p95:>9.2f}{med - base:>+10.3f}{sum(got[mode]['drawn']):>14}{cam:>17}")


if __name__ == "__main__":
    main()
