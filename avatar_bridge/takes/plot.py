"""``avatar-bridge plot``: a take's blendshape curves and head rotation over time, blinks marked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.takes.format import Take

# A blink is both eyes closing past CLOSE and reopening below OPEN (hysteresis, so flutter near
# one threshold is one blink, not several).
BLINK_CLOSE = 0.5
BLINK_OPEN = 0.3


class PlotError(ValueError):
    """Bad plot options (unknown shape name, no frames)."""


@dataclass(frozen=True)
class PlotConfig:
    shapes: tuple[str, ...] = ()       # empty: the ``top`` shapes that moved most
    top: int = 6
    width_px: int = 1600
    height_px: int = 900
    dpi: int = 100
    overwrite: bool = False            # refuse to replace an existing PNG unless asked


@dataclass
class PlotResult:
    path: Path
    shapes: list[str]
    blinks: list[float] = field(default_factory=list)   # blink onsets, seconds from the take's start
    size_px: tuple[int, int] = (0, 0)


def most_moving(blendshapes: np.ndarray, top: int) -> list[str]:
    """The ``top`` shapes with the widest robust range (5th to 95th percentile) over the take."""
    if len(blendshapes) == 0:
        return list(ARKIT_BLENDSHAPES[:top])
    spread = np.percentile(blendshapes, 95, axis=0) - np.percentile(blendshapes, 5, axis=0)
    order = np.argsort(-spread, kind="stable")
    return [ARKIT_BLENDSHAPES[i] for i in order[:top]]


def blink_onsets(times: np.ndarray, blendshapes: np.ndarray) -> list[float]:
    """Times at which both eyes closed (mean of eyeBlinkLeft/Right crossing up through BLINK_CLOSE)."""
    closed = (blendshapes[:, INDEX["eyeBlinkLeft"]] + blendshapes[:, INDEX["eyeBlinkRight"]]) / 2
    onsets, shut = [], False
    for t, v in zip(times, closed):
        if not shut and v >= BLINK_CLOSE:
            onsets.append(float(t))
            shut = True
        elif shut and v < BLINK_OPEN:
            shut = False
    return onsets


def _spans(times: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    out, start = [], None
    for t, m in zip(times, mask):
        if m and start is None:
            start = t
        elif not m and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, times[-1]))
    return out


def plot_take(take: Take, out: str | Path, config: PlotConfig = PlotConfig()) -> PlotResult:
    """Draw the take to a PNG of exactly ``width_px`` x ``height_px``."""
    import matplotlib
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    if not take.frames:
        raise PlotError(f"{take.path.name} has no frames to plot")
    unknown = [s for s in config.shapes if s not in INDEX]
    if unknown:
        raise PlotError(f"unknown blendshape(s) {', '.join(unknown)}; names are ARKit's, e.g. jawOpen, eyeBlinkLeft")
    if Path(out).exists() and not config.overwrite:
        raise PlotError(f"{out} already exists; pick another name with --out or pass --overwrite")
    times = take.times - take.times[0]
    bs = take.blendshapes
    shapes = list(config.shapes) or most_moving(bs, config.top)
    blinks = blink_onsets(times, bs)
    angles = np.degrees(np.array([head_yaw_pitch_roll(f.state.head_rotation) for f in take.frames]))
    absent = _spans(times, ~take.present)

    fig, (ax_bs, ax_head) = plt.subplots(
        2, 1, sharex=True, figsize=(config.width_px / config.dpi, config.height_px / config.dpi),
        dpi=config.dpi, gridspec_kw={"height_ratios": [2, 1]})
    for name in shapes:
        ax_bs.plot(times, bs[:, INDEX[name]], label=name, linewidth=1.4)
    for label, col in (("yaw", 0), ("pitch", 1), ("roll", 2)):
        ax_head.plot(times, angles[:, col], label=label, linewidth=1.2)
    for ax in (ax_bs, ax_head):
        for a, b in absent:
            ax.axvspan(a, b, color="0.85", zorder=0)
        for t in blinks:
            ax.axvline(t, color="tab:purple", alpha=0.35, linewidth=1.0, linestyle="--")
        ax.grid(True, alpha=0.3)
    ax_bs.set_ylim(-0.02, 1.02)
    ax_bs.set_ylabel("blendshape (0..1)")
    ax_bs.legend(loc="upper right", ncol=min(3, len(shapes)), fontsize=9, framealpha=0.8)
    ax_head.set_ylabel("head rotation (deg)")
    ax_head.set_xlabel("time (s)")
    ax_head.legend(loc="upper right", ncol=3, fontsize=9, framealpha=0.8)
    duration = float(times[-1])
    subtitle = (f"{len(take.frames)} frames, {duration:.1f} s, {len(blinks)} blink{'s' if len(blinks) != 1 else ''} "
                f"(dashed)" + (", grey: no face" if absent else ""))
    # The name and source come from the file; a "$" in them would start matplotlib's mathtext.
    title = f"{take.path.name} — {take.header.source or 'take'}".replace("$", r"\$")
    fig.suptitle(f"{title}\n{subtitle}", fontsize=11)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=config.dpi)  # no bbox_inches="tight": that would change the pixel size
    plt.close(fig)
    return PlotResult(out, shapes, blinks, (config.width_px, config.height_px))


def parse_size(text: str) -> tuple[int, int]:
    """"1600x900" -> (1600, 900)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w < 200 or h < 150:
            raise ValueError
        return w, h
    except ValueError:
        raise PlotError(f"bad size {text!r}; use WIDTHxHEIGHT in pixels, at least 200x150, e.g. 1600x900") from None


def parse_shapes(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()

