"""How far could a reader of the lower face's geometry go on headset renders? Side by side on the same frames.

    .venv/bin/python benchmarks/headset_ceiling.py --data /tmp/hs_*.npz

Reads the whole-frame files ``training/headset_data.py`` writes (the ones train_headset.py trains on;
the command is in its docstring). Webcam and from-below frames only. One readout recipe for every
row (the mesh readout's: standardised features + 1,500 random Fourier features, ridge lambda 0.3,
fitted on the first 90 % of frames, scored on the last 10 %, mean Pearson r over the lower-face
shapes that move there): from the *true* projected jaw, nose-base and lip points (the 42 of the 68
that the point network places, levelled as its readout levels them: ``point_features``), from the
same points with Gaussian noise of a given share of the jaw width, and from MediaPipe's mesh fitted to
the frame (under the painted visor on most frames). The gap between the rows is what landmark
precision is worth on these renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_bridge.estimators.lower_face import MeshReadout, mesh_features, point_features  # noqa: E402
from avatar_bridge.tracking.lower_face import LOWER_POINTS  # noqa: E402
from training.headset_data import LOWER_FACE_SHAPES, LOWER_INDEX, VIEWS  # noqa: E402
from training.train_headset import ridge  # noqa: E402


def held_out_r(x: np.ndarray, y: np.ndarray, lam: float = 0.3, features: int = 1500, gamma: float = 0.3,
               seed: int = 0) -> tuple[float, float]:
    """(mean r, jawOpen r) of the readout recipe fitted on the first 90 % of rows, on the last 10 %."""
    rng = np.random.default_rng(seed)
    n_val = len(x) // 10
    mean, std = x[:-n_val].mean(0), x[:-n_val].std(0) + 1e-9
    proj = rng.normal(0.0, gamma / np.sqrt(x.shape[1]), (x.shape[1], features))
    phase = rng.uniform(0.0, 2 * np.pi, features)
    a = MeshReadout.design(x, mean, std, proj, phase)
    w = ridge(a[:-n_val], y[:-n_val], lam)
    pred, true = np.clip(a[-n_val:] @ w, 0, 1), y[-n_val:]
    rs = {n: np.corrcoef(pred[:, j], true[:, j])[0, 1] for j, n in enumerate(LOWER_FACE_SHAPES)
          if true[:, j].std() > 0.05 and pred[:, j].std() > 1e-9}
    return float(np.mean(list(rs.values()))), float(rs.get("jawOpen", np.nan))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="training/headset_data.py .npz files")
    ap.add_argument("--noise", type=float, nargs="*", default=[0.0025, 0.005, 0.01, 0.02],
                    help="noise on the true points, as a share of the jaw width")
    a = ap.parse_args(argv)
    parts = []
    for p in a.data:
        try:
            with np.load(p) as z:
                parts.append({k: z[k] for k in ("l68", "blendshapes", "views", "meshes")})
        except (OSError, KeyError, ValueError) as exc:
            ap.error(f"{p} is not a headset_data.py frames file ({exc}); write one with python -m training.headset_data")
    data = {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}
    # Frames the mesh fitted, so every row scores the same faces (mouth-camera frames have no mesh).
    keep = (data["views"] != VIEWS.index("mouthcam")) & np.isfinite(data["meshes"][:, 0, 0])
    y = data["blendshapes"][keep][:, LOWER_INDEX].astype(np.float64)
    if len(y) < 50:
        ap.error(f"only {len(y)} frames with a fitted mesh; render more with python -m training.headset_data")
    pts = point_features(data["l68"][keep][:, LOWER_POINTS])     # what the point network's readout reads
    rng = np.random.default_rng(1)
    rows = [("true points", *held_out_r(pts, y))]
    rows += [(f"true points + noise {s:.2%} of jaw width", *held_out_r(pts + rng.normal(0, s, pts.shape), y))
             for s in a.noise]
    rows.append(("MediaPipe mesh (the shipped readout's input)", *held_out_r(mesh_features(data["meshes"][keep]), y)))
    print(f"{len(y)} frames ({len(y) // 10} held out)\n\n{'reader input':<46} {'lower r':>8} {'jawOpen r':>10}")
    for name, r, jaw in rows:
        print(f"{name:<46} {r:>8.3f} {jaw:>10.3f}")


if __name__ == "__main__":
    main()
