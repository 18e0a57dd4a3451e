"""Jitter and lag of the signal chain, raw vs filtered, per filter group, on synthetic sequences
with known truth (30 fps, white Gaussian noise at levels seen from webcam estimators).

    .venv/bin/python benchmarks/bench_signal_chain.py            # table for the default settings
    .venv/bin/python benchmarks/bench_signal_chain.py --search   # grid search that chose the defaults
    .venv/bin/python benchmarks/bench_signal_chain.py --search --require-5x   # the steadier alternative

jitter: std of the output while the true face is held still (after a 1 s settle).
lag:    frames after a step until the output first reaches 90 % of the step (raw: 0);
        ramp/slow/small: the same after the end of a 0.4 s full ramp, a 1 s ramp of a third of
        the step, and a step of 15 % of it (slow, subtle moves are where a 1€ filter drags).
blink:  peak of a 3-frame blink (true value 1.0 for 3 frames) after filtering; must stay > 0.8.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_bridge.arkit import INDEX  # noqa: E402
from avatar_bridge.signal.one_euro import OneEuroFilter  # noqa: E402
from avatar_bridge.signal.chain import FilterParams, SignalChain, SignalChainConfig  # noqa: E402
from avatar_bridge.types import FaceState  # noqa: E402

FPS = 30.0
DEG = math.pi / 180.0
STILL_FRAMES, SETTLE_FRAMES, SEEDS = 300, 30, 8

# (row label, filter group, what is varied, held value, noise std, step size, display unit scale, unit)
SIGNALS = [
    ("eyes   eyeBlinkLeft", "eyes", ("bs", "eyeBlinkLeft"), 0.2, 0.04, 0.7, 1.0, ""),
    ("gaze   eyeLookOutLeft", "gaze", ("bs", "eyeLookOutLeft"), 0.2, 0.03, 0.6, 1.0, ""),
    ("gaze   left yaw", "gaze", ("gaze", 0), 0.0, 1.5 * DEG, 15 * DEG, 1 / DEG, "deg"),
    ("brows  browInnerUp", "brows", ("bs", "browInnerUp"), 0.2, 0.02, 0.5, 1.0, ""),
    ("mouth  jawOpen", "mouth", ("bs", "jawOpen"), 0.2, 0.03, 0.6, 1.0, ""),
    ("mouth  mouthSmileLeft", "mouth", ("bs", "mouthSmileLeft"), 0.2, 0.03, 0.4, 1.0, ""),
    ("head   yaw", "head", ("yaw",), 0.0, 0.7 * DEG, 20 * DEG, 1 / DEG, "deg"),
    ("head   position x", "head", ("px",), 0.0, 0.002, 0.05, 1000.0, "mm"),
]

# Targets the search must meet: lag in frames at 30 fps (~100 ms for what people watch most).
LAG_TARGET = {"eyes": 2, "gaze": 3, "brows": 4, "mouth": 3, "head": 4}
BLINK_TARGET = 0.85  # margin over the 0.8
# Besides the step, a 0.4 s full ramp and a slow, small one (a third of the step over 1 s) must
# meet the same lag: a tiny min_cutoff with a big beta is quick on steps but drags on slow,
# subtle moves, which a step alone hides. (frames of the ramp, fraction of the step)
# A small step (15 % of the big one) may take twice the lag target: lag weighted by 1/2.
RAMPS = ((1, 1.0, 1.0), (12, 1.0, 1.0), (30, 0.33, 1.0), (1, 0.15, 0.5))


def _yaw_quat(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) for yaw about y, then pitch about x, then roll about z (small angles)."""
    def mul(a, b):
        ax, ay, az, aw = a
        bx, by, bz, bw = b
        return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)
    qy = (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))
    qx = (math.sin(pitch / 2), 0.0, 0.0, math.cos(pitch / 2))
    qz = (0.0, 0.0, math.sin(roll / 2), math.cos(roll / 2))
    return mul(mul(qy, qx), qz)


def _yaw_of(q) -> float:
    x, y, z, w = q
    return math.atan2(2 * (w * y + x * z), 1 - 2 * (x * x + y * y))


def make_state(what: tuple, value: float, rng: np.random.Generator | None, noise: float, t: float, i: int) -> FaceState:
    """A present face with ``what`` at ``value`` plus noise on that quantity."""
    n = 0.0 if rng is None else float(rng.normal(0.0, noise))
    bs = np.zeros(52, np.float32)
    kw: dict = {}
    if what[0] == "bs":
        bs[INDEX[what[1]]] = np.clip(value + n, 0.0, 1.0)
    elif what[0] == "gaze":
        kw["gaze_left"] = (value + n, 0.0)
    elif what[0] == "yaw":
        extra = (0.0, 0.0) if rng is None else rng.normal(0.0, noise, 2)
        kw["head_rotation"] = _yaw_quat(value + n, *extra)
    elif what[0] == "px":
        kw["head_position"] = (value + n, 0.0, -0.5)
    return FaceState(blendshapes=bs, face_present=True, confidence=1.0, t_capture=t, frame_index=i, **kw)


def read(state: FaceState, what: tuple) -> float:
    if what[0] == "bs":
        return state.blendshape(what[1])
    if what[0] == "gaze":
        return state.gaze_left[0]
    if what[0] == "yaw":
        return _yaw_of(state.head_rotation)
    return state.head_position[0]


def measure(config: SignalChainConfig, what: tuple, held: float, noise: float, step: float) -> dict:
    """Jitter (std, held still with noise), lag (frames to 90 % of a clean step), blink peak."""
    outs = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        chain = SignalChain(replace(config, calibration=False))
        ys = [read(chain.process(make_state(what, held, rng, noise, i / FPS, i)), what)
              for i in range(STILL_FRAMES)]
        outs.append(ys[SETTLE_FRAMES:])
    jitter = float(np.mean([np.std(o) for o in outs]))

    lags = []
    for ramp, size, _ in RAMPS:
        chain = SignalChain(replace(config, calibration=False))
        lag = None
        for i in range(150):
            v = held + size * step * min(max((i - 29) / ramp, 0.0), 1.0)
            y = read(chain.process(make_state(what, v, None, 0.0, i / FPS, i)), what)
            if i >= 29 + ramp and lag is None and y - held >= 0.9 * size * step:
                lag = i - (29 + ramp)
        lags.append(lag)
    lag = lags[0]
    blink = None
    if what == ("bs", "eyeBlinkLeft"):
        chain = SignalChain(replace(config, calibration=False))
        peak = 0.0
        for i in range(40):
            v = 1.0 if 30 <= i < 33 else 0.0
            peak = max(peak, read(chain.process(make_state(what, v, None, 0.0, i / FPS, i)), what))
        blink = peak
    return {"jitter": jitter, "lag": lag, "lags": lags, "blink": blink}


def table(config: SignalChainConfig) -> str:
    off = replace(config, smoothing=False)
    lines = [f"{'signal':24s} {'noise':>7s} {'step':>6s} | {'jitter raw':>10s} {'filtered':>9s} {'drop':>6s} | "
             f"{'lag raw':>7s} {'filtered':>8s} {'ramp/slow/small':>15s} | params (min_cutoff Hz, beta, d_cutoff Hz, snap)"]
    lines.append("-" * len(lines[0]))
    for label, group, what, held, noise, step, scale, unit in SIGNALS:
        raw, filt = measure(off, what, held, noise, step), measure(config, what, held, noise, step)
        p = config.group(group)
        lag = "never" if filt["lag"] is None else f"{filt['lag']} fr"
        lines.append(
            f"{label:24s} {noise * scale:7.3g} {step * scale:6.3g} | {raw['jitter'] * scale:10.4f} "
            f"{filt['jitter'] * scale:9.4f} {raw['jitter'] / filt['jitter']:5.1f}x | {raw['lag']:5d} fr {lag:>8s} {'/'.join(str(x) for x in filt['lags'][1:]):>15s} | "
            f"{p.min_cutoff:g}, {p.beta:g}, {p.d_cutoff:g}{f', snap {p.snap:g}' if p.snap else ''} {unit}")
        if filt["blink"] is not None:
            lines.append(f"{'  3-frame blink peak':24s} {'':7s} {'1.0':>6s} | raw {raw['blink']:.3f}, "
                         f"filtered {filt['blink']:.3f} (must be > 0.8)")
    return "\n".join(lines)


MIN_CUTOFFS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5)
BETAS = (0.3, 0.5, 1, 2, 3, 5, 8, 12, 20, 40, 80)
D_CUTOFFS = (0.5, 1.0, 2.0, 3.0, 5.0)


def search(max_lag: dict[str, int], require_5x: bool = False) -> dict[str, FilterParams]:
    """Per group, over a grid: the lowest mean relative jitter (filtered / raw std) whose lag meets
    ``max_lag`` on every signal of the group and, for eyes, keeps a 3-frame blink above BLINK_TARGET.
    Prints the best reachable jitter for each lag so the trade-off is visible."""
    grid = [FilterParams(*p) for p in itertools.product(MIN_CUTOFFS, BETAS, D_CUTOFFS)]
    chosen: dict[str, FilterParams] = {}
    for group in LAG_TARGET:
        rows = [s for s in SIGNALS if s[1] == group]
        res = [_grid_measure(grid, what, held, noise, step) for _, _, what, held, noise, step, _, _ in rows]
        rel = np.mean([r["jitter"] / noise for r, (_, _, _, _, noise, *_rest) in zip(res, rows)], axis=0)
        lag = np.max([r["lag"] for r in res], axis=0)
        ok = np.ones(len(grid), bool)
        # --require-5x: a still face from a good webcam (a third of the noise above) must jitter
        # at least 5x less after the filter, on every signal of the group. It costs lag on small
        # moves (min_cutoff must drop below ~0.37 Hz), so the defaults do not require it.
        for _, _, what, held, noise, step, _, _ in rows if require_5x else ():
            quiet = _grid_measure(grid, what, held, noise / 3, step)
            ok &= quiet["jitter"] <= (noise / 3) / 5.0
        for r in res:
            if r["blink"] is not None:
                ok &= r["blink"] >= BLINK_TARGET
        frontier = []
        for L in range(1, 8):
            sel = np.flatnonzero(ok & (lag <= L))
            if sel.size:
                i = sel[np.argmin(rel[sel])]
                frontier.append(f"lag<={L}: {1 / rel[i]:4.1f}x")
        target = max_lag[group]
        while not np.any(ok & (lag <= target)):
            target += 1  # the lag target cannot be met with the 5x claim: relax it, and say so
        sel = np.flatnonzero(ok & (lag <= target))
        i = sel[np.argmin(rel[sel])]
        chosen[group] = grid[i]
        print(f"{group:6s} jitter drop reachable  " + "  ".join(frontier))
        print(f"{'':6s} chosen for lag <= {target}{'' if target == max_lag[group] else ' (relaxed)'}: "
              f"{grid[i]} (drop {1 / rel[i]:.1f}x)", flush=True)
    return chosen


def _grid_measure(grid: list[FilterParams], what: tuple, held: float, noise: float, step: float) -> dict:
    """``measure`` on the bare filter for every grid point at once: one channel per (point, seed).
    Head yaw is filtered as the quaternion's y component, which is what the chain does for a pure yaw."""
    to_f = (lambda a: np.sin(a / 2)) if what[0] == "yaw" else (lambda a: a)
    g = len(grid)

    def filt(seeds: int) -> OneEuroFilter:
        rep = lambda k: np.repeat([getattr(p, k) for p in grid], seeds)  # noqa: E731
        return OneEuroFilter(g * seeds, rep("min_cutoff"), rep("beta"), rep("d_cutoff"), rep("snap"))

    rng = np.random.default_rng(0)
    f, ys = filt(SEEDS), []
    for i in range(STILL_FRAMES):
        v = np.tile(held + rng.normal(0.0, noise, SEEDS), g)
        if what[0] == "bs":
            v = np.clip(v, 0, 1)
        ys.append(f(to_f(v), i / FPS))
    jitter = np.std(np.array(ys)[SETTLE_FRAMES:], axis=0).reshape(g, SEEDS).mean(axis=1)
    if what[0] == "yaw":
        jitter *= 2.0  # back to radians of yaw
    lag = np.zeros(g, int)
    for ramp, size, weight in RAMPS:
        f, lag_r = filt(1), np.full(g, 99)
        for i in range(150):
            v = held + size * step * min(max((i - 29) / ramp, 0.0), 1.0)
            y = f(np.full(g, to_f(v)), i / FPS)
            hit = (i >= 29 + ramp) & (lag_r == 99) & (y - to_f(held) >= 0.9 * (to_f(held + size * step) - to_f(held)))
            lag_r[hit] = i - (29 + ramp)
        lag = np.maximum(lag, np.floor(lag_r * weight).astype(int))
    blink = None
    if what == ("bs", "eyeBlinkLeft"):
        f = filt(1)
        blink = np.max([f(np.full(g, 1.0 if 30 <= i < 33 else 0.0), i / FPS) for i in range(40)], axis=0)
    return {"jitter": jitter, "lag": lag, "blink": blink}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search", action="store_true", help="grid-search per-group parameters first")
    ap.add_argument("--require-5x", action="store_true",
                    help="with --search: also require a 5x jitter drop at a third of the noise (steadier, laggier)")
    args = ap.parse_args()
    config = SignalChainConfig()
    if args.search:
        config = replace(config, **search(LAG_TARGET, args.require_5x))
        print()
    print(f"30 fps, {SEEDS} noise seeds x {STILL_FRAMES} frames held still; steps noise-free\n")
    print(table(config))


if __name__ == "__main__":
    main()
