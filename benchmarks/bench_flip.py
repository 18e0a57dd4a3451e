"""Left/right consistency of a blendshape model on rendered faces and their mirror images.

    python benchmarks/bench_flip.py [--model a.onnx --model b.onnx ...] [--identities 16]

Each identity (ICT-FaceKit, seed 20, 21, ...) is rendered winking and smiling on its left with the
left outer brow raised; the model reads the image and its horizontal mirror. Printed per model:
the mean absolute difference between the mirror's outputs and the image's outputs with Left and
Right swapped (0 = perfectly consistent), and the smallest of the two views' smile and blink
margins (left minus right in the image, right minus left in the mirror; median and minimum over
identities). ``tests/test_shipped_model.py`` asserts the same on identities 20-27.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from avatar_bridge.arkit import INDEX, MIRROR_PERMUTATION
    from avatar_bridge.estimators.neural import NeuralEstimator
    from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
    from avatar_bridge.types import Frame
    from training import render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None, help=".onnx to check (repeatable; default: the shipped one)")
    p.add_argument("--identities", type=int, default=16)
    a = p.parse_args(argv)
    models = a.model or [None]

    table = Table(title=f"mirror consistency over {a.identities} rendered identities (seeds 20-{19 + a.identities})")
    for col in ("model", "flip diff mean", "flip diff max", "smile margin median / min", "blink margin median / min"):
        table.add_column(col, justify="right")
    with render.Renderer(256, 256) as renderer, FaceTracker(TrackerConfig(static_image_mode=True)) as tracker:
        images = []
        for seed in range(20, 20 + a.identities):
            identity = np.random.default_rng(seed).normal(0, 1, 100).astype(np.float32)
            params = render.default_params(identity=identity, seed=seed, blendshapes={
                "eyeBlinkLeft": 1.0, "mouthSmileLeft": 0.9, "browOuterUpLeft": 0.8})
            image = renderer.render(params).image
            images.append([tracker.track(Frame(np.ascontiguousarray(im), 0, 0.0, "bench")) for im in (image, image[:, ::-1])])
        for path in models:
            est = NeuralEstimator.from_path(path)
            diff, margins = [], {"mouthSmile": [], "eyeBlink": []}
            for views in images:
                outs = []
                for obs in views:
                    est.reset()
                    outs.append(est.estimate(obs).blendshapes)
                a_, b_ = outs
                diff.append(np.abs(b_ - a_[list(MIRROR_PERMUTATION)]).mean())
                for shape, m in margins.items():
                    m.append(min(a_[INDEX[shape + "Left"]] - a_[INDEX[shape + "Right"]],
                                 b_[INDEX[shape + "Right"]] - b_[INDEX[shape + "Left"]]))
            table.add_row(path or "shipped", f"{np.mean(diff):.3f}", f"{np.max(diff):.3f}",
                          *[f"{np.median(m):.2f} / {np.min(m):.2f}" for m in margins.values()])
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
