"""Held-out evaluation: the shipped (or any) network vs the geometry baseline, side by side.

    python -m training.evaluate --data cache/synth/heldout [--model path.onnx] [--int8 path.onnx]

Runs the daemon's own estimators (``NeuralEstimator``, ``GeometryEstimator``) frame by frame over
every cached sequence, resetting them where the tracker lost the face as the pipeline does, and
scores the frames where a face was found. The held-out set must come from a seed never trained on
(new identities, lighting, backgrounds and expressions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avatar_bridge.estimators.geometry import GeometryEstimator
from avatar_bridge.types import FaceObservation, Frame
from training.dataset import load_cache
from training.metrics import GROUPS, score


def run_estimator(estimator, data) -> dict[str, np.ndarray]:
    """Frame-by-frame estimates over every found frame: bs (N, 52), quat (N, 4), gaze (N, 4)."""
    w, h = data.image_size
    blank = np.zeros((h, w, 3), np.uint8)    # estimators read only the frame size from the image
    bs, quat, gaze = [], [], []
    S, T = data.found.shape
    for s in range(S):
        estimator.reset()
        for t in range(T):
            if not data.found[s, t]:
                estimator.reset()
                continue
            obs = FaceObservation(Frame(blank, t, t / 30.0, "eval"), data.landmarks[s, t], data.crops[s, t],
                                  data.crop_transform[s, t], 1.0)
            st = estimator.estimate(obs)
            bs.append(st.blendshapes)
            quat.append(st.head_rotation)
            gaze.append([*st.gaze_left, *st.gaze_right])
    return {"bs": np.asarray(bs), "quat": np.asarray(quat), "gaze": np.asarray(gaze)}


ROWS = [("mae/eyes", "MAE eyes", "{:.4f}"), ("mae/gaze", "MAE gaze (eyeLook*)", "{:.4f}"),
        ("mae/brows", "MAE brows", "{:.4f}"), ("mae/jaw/mouth", "MAE jaw/mouth", "{:.4f}"),
        ("mae/cheek/nose", "MAE cheek/nose", "{:.4f}"), ("mae/all", "MAE all 51", "{:.4f}"),
        ("corr/mean_moving", "mean Pearson r (moving shapes)", "{:.3f}"),
        *[(f"corr/{g}", f"  r {g}", "{:.3f}") for g in GROUPS],
        ("blink_f1", "blink F1", "{:.3f}"),
        ("head_deg/mean", "head pose error, mean (deg)", "{:.2f}"), ("head_deg/median", "head pose error, median (deg)", "{:.2f}"),
        ("gaze_deg/mean", "gaze angle error, mean (deg)", "{:.2f}")]


def evaluate(data_dir: str, models: dict[str, str | None], geometry: bool = True) -> dict[str, dict]:
    from rich.progress import track

    from avatar_bridge.estimators.neural import NeuralEstimator

    data = load_cache(data_dir)
    found = data.found
    truth = {"bs": data.blendshapes[found], "quat": data.head_quat[found], "gaze": data.gaze[found]}
    estimators = {name: NeuralEstimator.from_path(path) for name, path in models.items()}
    if geometry:
        estimators["geometry"] = GeometryEstimator()
    results = {}
    for name in track(list(estimators), description="evaluating"):
        pred = run_estimator(estimators[name], data)
        results[name] = score(pred["bs"], truth["bs"], pred["quat"], truth["quat"], pred["gaze"], truth["gaze"])
    results["_set"] = {"folder": data_dir, "sequences": int(found.shape[0]), "frames": int(found.size),
                       "frames_with_face": int(found.sum()), "source_sequences": int(len(np.unique(data.seq_id)))}
    return results


def print_table(results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    names = [k for k in results if not k.startswith("_")]
    s = results["_set"]
    table = Table(title=f"held-out set {s['folder']}: {s['source_sequences']} sequences x2 (mirrored), "
                        f"{s['frames_with_face']}/{s['frames']} frames with a face")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    for key, label, fmt in ROWS:
        table.add_row(label, *[fmt.format(results[n][key]) for n in names])
    Console(width=120).print(table)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cache/synth/heldout", help="cached held-out set (training.generate --seed <new>)")
    p.add_argument("--model", default=None, help="fp32 .onnx to evaluate (default: the shipped model)")
    p.add_argument("--int8", default="", help="also evaluate this int8 .onnx ('shipped' = the shipped int8 model)")
    p.add_argument("--no-geometry", action="store_true", help="skip the geometry baseline")
    p.add_argument("--json", default="", help="write all numbers (incl. per-shape correlation) here")
    a = p.parse_args(argv)
    from blendshape_model import SHIPPED_MODEL_INT8
    models: dict[str, str | None] = {"neural": a.model}
    if a.int8:
        models["neural-int8"] = str(SHIPPED_MODEL_INT8) if a.int8 == "shipped" else a.int8
    results = evaluate(a.data, models, geometry=not a.no_geometry)
    print_table(results)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
