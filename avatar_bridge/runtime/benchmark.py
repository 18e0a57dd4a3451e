"""Stage timings for ``avatar-bridge bench``: decode, tracking, estimator, signal, publish."""

from __future__ import annotations

import socket
import time

import numpy as np
from rich.progress import track

from avatar_bridge.bus.sockets import BusConfig, BusPublisher
from avatar_bridge.runtime.pipeline import Pipeline, PipelineConfig, Stage
from avatar_bridge.tracking.sources import SourceConfig, open_source


def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run_pipeline_bench(spec: str, frames: int, estimator: str, chain: Stage | None = None,
                       progress: bool = True) -> dict:
    """Run ``frames`` frames of ``spec`` through the whole pipeline as fast as possible."""
    source = open_source(SourceConfig(spec=spec, realtime=False, loop=True))
    pipeline = Pipeline.create(PipelineConfig(estimator=estimator), chain)
    bus = BusPublisher(BusConfig(pub_endpoint=free_tcp_endpoint(), control_endpoint=""))
    stages: dict[str, list[float]] = {}
    faces = 0
    it = iter(source.frames())
    steps = track(range(frames), description="benchmarking", transient=True) if progress else range(frames)
    start = time.perf_counter()
    try:
        for _ in steps:
            t0 = time.perf_counter()
            frame = next(it)
            decode = (time.perf_counter() - t0) * 1000
            state, timings = pipeline.process(frame)
            t1 = time.perf_counter()
            bus.publish_face(state)
            timings = {"decode": decode, **timings, "publish": (time.perf_counter() - t1) * 1000}
            timings["total"] = (time.perf_counter() - t0) * 1000
            faces += int(state.face_present)
            for k, v in timings.items():
                stages.setdefault(k, []).append(v)
    finally:
        elapsed = time.perf_counter() - start
        bus.close()
        pipeline.close()
    return {
        "source": spec, "frames": frames, "estimator": pipeline.estimator.name,
        "face_rate": faces / max(frames, 1), "fps": frames / elapsed,
        "stages": {k: {"median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95))}
                   for k, v in stages.items()},
    }
