"""Which shapes can be seen at all: each ARKit shape alone, through the tracker and the model.

    python benchmarks/bench_observability.py [--model a.onnx] [--identities 8] [--size 192]

For every shape ICT-FaceKit has, each identity (seeds 40, 41, ...) is rendered facing the camera
at rest and with that shape alone at full weight, at the training renders' size. Printed per shape
(medians over identities):

- ``mesh cm``: the largest vertex displacement of the shape on the face (what the renderer moves);
- ``landmark SNR``: how far the shape moves MediaPipe's frontalised landmarks (RMS over the 478,
  unit = outer eye-corner span) divided by how far they move between two renders of the resting
  face half a degree and half a millimetre apart (the tracker's own jitter). Under ~2 the tracker's
  landmarks barely carry the shape and the network has to read it from pixels;
- ``model``: the shipped (or given) model's output for that shape, at rest and at full weight,
  and ``top``: the share of identities where that shape is the output that rose most.

It separates what limits accuracy: a shape the tracker sees and the model reads alone but not in
the held-out sequences is a disentangling problem (combinations, data); one the tracker does not
see and the model does not read alone needs the pixels learned (data, capacity, resolution).
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> None:
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from avatar_bridge.arkit import ARKIT_BLENDSHAPES
    from avatar_bridge.estimators.neural import NeuralEstimator
    from avatar_bridge.tracking.face_landmarks import Frontaliser
    from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
    from avatar_bridge.types import Frame
    from avatar_bridge.conventions import from_yaw_pitch_roll
    from training import render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help=".onnx to check (default: the shipped one)")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--size", type=int, default=192, help="render side in pixels (training renders are 192)")
    a = p.parse_args(argv)

    shapes = [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n != "tongueOut"]
    est = NeuralEstimator.from_path(a.model)
    frontal = Frontaliser()
    snr, rest_out, full_out, top = ({i: [] for i in shapes} for _ in range(4))
    model = render.FaceModel.load()
    one_hot = np.eye(len(ARKIT_BLENDSHAPES), dtype=np.float32)
    # Largest displacement on the face (vertices 0-9408); ICT's expression shapes are shared by every identity.
    mesh_cm = {i: float(np.linalg.norm(model.arkit_to_ict_deltas(one_hot[i])[:9409], axis=1).max()) for i in shapes}

    with render.Renderer(a.size, a.size, model=model) as renderer, \
            FaceTracker(TrackerConfig(static_image_mode=True)) as tracker:
        def observe(params):
            image = renderer.render(params).image
            obs = tracker.track(Frame(image, 0, 0.0, "bench"))
            if obs is None:
                return None, None
            est.reset()
            return frontal(obs.landmarks, a.size, a.size), est.estimate(obs).blendshapes

        for seed in track(range(40, 40 + a.identities), description="identities"):
            identity = np.random.default_rng(seed).normal(0, 1, 100).astype(np.float32)
            base = render.default_params(identity=identity, seed=seed)
            lm0, out0 = observe(base)
            x, y, z = base.head_position
            lm_j, _ = observe(render.default_params(identity=identity, seed=seed,
                                                    head_rotation=from_yaw_pitch_roll(0.0087, -0.0087, 0.0),
                                                    head_position=(x + 0.0005, y, z)))
            if lm0 is None or lm_j is None:
                continue
            noise = float(np.sqrt(((lm_j - lm0) ** 2).sum(-1).mean()))
            for i in shapes:
                lm1, out1 = observe(render.default_params(identity=identity, seed=seed, blendshapes=one_hot[i]))
                if lm1 is None:
                    continue
                snr[i].append(float(np.sqrt(((lm1 - lm0) ** 2).sum(-1).mean())) / max(noise, 1e-6))
                rest_out[i].append(float(out0[i]))
                full_out[i].append(float(out1[i]))
                top[i].append(int(np.argmax(out1 - out0) == i))

    table = Table(title=f"each shape alone, {a.identities} identities, {a.size} px, frontal "
                        f"(model: {a.model or 'shipped'})")
    for col in ("shape", "mesh cm", "landmark SNR", "model at rest", "model at 1.0", "top"):
        table.add_column(col, justify="right")
    med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    for i in sorted(shapes, key=lambda i: med(snr[i])):
        table.add_row(ARKIT_BLENDSHAPES[i], f"{mesh_cm[i]:.2f}", f"{med(snr[i]):.1f}", f"{med(rest_out[i]):.2f}",
                      f"{med(full_out[i]):.2f}", f"{np.mean(top[i]) if top[i] else float('nan'):.2f}")
    Console(width=120).print(table)
    reads = [i for i in shapes if med(full_out[i]) - med(rest_out[i]) >= 0.3]
    seen = [i for i in shapes if med(snr[i]) >= 2.0]
    print(f"tracker sees (SNR >= 2): {len(seen)}/{len(shapes)} shapes; model reads alone (rises >= 0.3): "
          f"{len(reads)}/{len(shapes)}; both: {len(set(seen) & set(reads))}")


if __name__ == "__main__":
    main()
