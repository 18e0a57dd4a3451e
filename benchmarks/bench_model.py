"""Per-frame latency of the shipped blendshape network, fp32 vs int8, in one run.

    python benchmarks/bench_model.py [--frames 2000] [--threads 1]

"network" is one ``BlendshapeRunner.step`` (onnxruntime only); "estimator" is the whole
``NeuralEstimator.estimate`` on a tracked real photograph (PnP + features + network + pose).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def timings(fns: dict[str, object], frames: int, warmup: int = 50) -> dict[str, tuple[float, float]]:
    """(median, p95) ms of each function, called in turn frame by frame so that the machine's
    background load and clock changes fall on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    ts = {k: np.empty(frames) for k in fns}
    for i in range(frames):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[k][i] = time.perf_counter() - t0
    return {k: (float(np.median(v) * 1000), float(np.percentile(v, 95) * 1000)) for k, v in ts.items()}


def main(argv=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from avatar_bridge.estimators.neural import NeuralConfig, NeuralEstimator
    from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
    from avatar_bridge.types import Frame
    from blendshape_model import SHIPPED_MODEL, SHIPPED_MODEL_INT8
    from blendshape_model.features import FeatureExtractor
    from blendshape_model.runner import RunnerConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    a = p.parse_args(argv)

    from skimage import data
    with FaceTracker(TrackerConfig(static_image_mode=True)) as tracker:
        obs = tracker.track(Frame(data.astronaut(), 0, 0.0, "bench"))
    table = Table(title=f"blendshape model latency per frame ({platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores, {a.threads} onnxruntime thread(s), {a.frames} frames)")
    for col in ("model", "size MB", "network median ms", "network p95 ms", "estimator median ms", "estimator p95 ms"):
        table.add_column(col, justify="right")
    h, w = obs.frame.image.shape[:2]
    feats, eyes = FeatureExtractor()(obs.landmarks, obs.crop, obs.crop_transform, (w, h), np.eye(3))
    models = {label: path for label, path in (("fp32", SHIPPED_MODEL), ("int8", SHIPPED_MODEL_INT8)) if path.exists()}
    fns = {}
    for label, path in models.items():
        est = NeuralEstimator(NeuralConfig(model_path=str(path), runner=RunnerConfig(threads=a.threads)))
        fns[label, "network"] = lambda est=est: est.runner.step(obs.crop, eyes, feats)
        fns[label, "estimator"] = lambda est=est: est.estimate(obs)
    t = timings(fns, a.frames)
    for label, path in models.items():
        net, full = t[label, "network"], t[label, "estimator"]
        table.add_row(label, f"{path.stat().st_size / 1e6:.2f}", f"{net[0]:.3f}", f"{net[1]:.3f}",
                      f"{full[0]:.3f}", f"{full[1]:.3f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
