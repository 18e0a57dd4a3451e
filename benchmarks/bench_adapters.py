"""Packets per second and added latency (encode + send) per adapter, feeding FaceStates at 60 fps.

    python benchmarks/bench_adapters.py [--seconds 3] [--fps 60]

Each adapter sends to a UDP socket on 127.0.0.1 that a thread drains; faces change every frame
(a random walk), so VRChat's change filter sends a realistic share. Adapters keep their default
rates (VRChat 30 Hz), so "frames sent" can be below the input fps.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import multiprocessing as mp
import time

import numpy as np

from avatar_bridge import conventions as cv
from avatar_bridge.adapters.registry import create_adapter
from avatar_bridge.types import FaceState


def _drain(port_q, count, stop) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    port_q.put(sock.getsockname()[1])
    while not stop.is_set():
        try:
            sock.recv(65536)
            with count.get_lock():
                count.value += 1
        except socket.timeout:
            continue


def sink():
    """A receiver in another process, so draining does not compete with the sender for the GIL."""
    port_q, count, stop = mp.Queue(), mp.Value("l", 0), mp.Event()
    proc = mp.Process(target=_drain, args=(port_q, count, stop), daemon=True)
    proc.start()
    return port_q.get(timeout=10), count, stop, proc


def faces(n: int, seed: int = 0) -> list[FaceState]:
    rng = np.random.default_rng(seed)
    bs = rng.random(52).astype(np.float32) * 0.5
    out = []
    for i in range(n):
        bs = np.clip(bs + rng.normal(0, 0.02, 52).astype(np.float32), 0, 1)
        yaw = 0.3 * np.sin(i / 30)
        out.append(FaceState(blendshapes=bs.copy(), head_rotation=cv.from_yaw_pitch_roll(yaw, 0.05, 0.0),
                             gaze_left=(0.1 * np.sin(i / 7), 0.05), gaze_right=(0.1 * np.sin(i / 7), 0.05),
                             face_present=True, frame_index=i))
    return out


def bench(name: str, seconds: float, fps: float) -> dict:
    port, received, stop, proc = sink()
    extra = {"listen_port": None, "oscquery": False} if name == "vrchat" else {}
    adapter = create_adapter(name, {"port": port, **extra})
    frames = faces(int(seconds * fps))
    times = []
    period, start = 1.0 / fps, time.perf_counter()
    for i, f in enumerate(frames):
        while time.perf_counter() < start + i * period:
            time.sleep(0.0005)
        dropped = adapter.gate.dropped
        t0 = time.perf_counter()
        adapter.send(f)
        if adapter.gate.dropped == dropped:  # time only frames the rate gate let through
            times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    time.sleep(0.2)
    stats = adapter.stats()
    adapter.close()
    stop.set()
    proc.join(2)
    us = sorted(1e6 * t for t in times)
    return {"adapter": name, "packets/s": stats["packets"] / elapsed, "received/s": received.value / elapsed,
            "median_us": statistics.median(us), "p95_us": us[int(0.95 * (len(us) - 1))],
            "frames_sent": len(times), "errors": stats["errors"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=60.0)
    args = ap.parse_args()
    print(f"{'adapter':<13}{'packets/s':>10}{'recv/s':>9}{'median µs':>11}{'p95 µs':>9}{'frames':>8}{'errors':>8}")
    for name in ("vmc", "vrchat", "livelink", "ifacialmocap"):
        r = bench(name, args.seconds, args.fps)
        print(f"{r['adapter']:<13}{r['packets/s']:>10.1f}{r['received/s']:>9.1f}{r['median_us']:>11.1f}"
              f"{r['p95_us']:>9.1f}{r['frames_sent']:>8}{r['errors']:>8}")


if __name__ == "__main__":
    main()
