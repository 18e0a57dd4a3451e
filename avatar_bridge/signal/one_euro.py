"""The One Euro filter (Casiez, Roussel & Vogel, CHI 2012), vectorised over independent channels.

Written here rather than taken from PyPI: the authors' own package (``OneEuroFilter`` 0.2.x) and
the other maintained ports filter one scalar per object with ``math`` calls, so the 63 channels of
a FaceState would need 63 Python objects and 63 calls a frame, and per-channel parameters would
live in a dict beside them. This is the same algorithm in a dozen numpy lines, one state array
per quantity, every channel with its own state and its own min_cutoff/beta/d_cutoff.
``tests/test_one_euro.py`` checks it against a scalar transcription of the paper, channel by
channel.
"""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray:
    """Exponential smoothing factor alpha of a first-order low-pass at ``cutoff_hz`` for a step ``dt``."""
    r = 2.0 * math.pi * np.asarray(cutoff_hz, np.float64) * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """One Euro filter over N channels; call it with a (N,) sample and its time in seconds.

    ``min_cutoff`` (Hz) sets the smoothing when the signal is still (lower: less jitter, more
    lag); ``beta`` (1 / signal unit) raises the cutoff with speed (higher: less lag on fast
    moves); ``d_cutoff`` (Hz) smooths the speed estimate. Each may be a scalar or an (N,) array.
    Timestamps are real capture times, so a dropped frame is a longer step, not a faster signal.

    ``snap`` (signal units, 0 = off; our addition, not the paper's): a sample further than this from
    the last output is passed through unfiltered and the filter goes on from it. A blink closes the
    eye by 0.5-1.0 in one frame while tracking jitter at rest is a few hundredths, so with a snap in
    between, the resting signal can be smoothed hard without a speed term that also lets jitter
    through, and a 2-3 frame blink still reaches its full depth on its first frame.
    """

    def __init__(self, n: int, min_cutoff: np.ndarray | float = 1.0, beta: np.ndarray | float = 0.0,
                 d_cutoff: np.ndarray | float = 1.0, snap: np.ndarray | float = 0.0) -> None:
        self.n = int(n)
        self.min_cutoff = np.broadcast_to(np.asarray(min_cutoff, np.float64), (self.n,)).copy()
        self.beta = np.broadcast_to(np.asarray(beta, np.float64), (self.n,)).copy()
        self.d_cutoff = np.broadcast_to(np.asarray(d_cutoff, np.float64), (self.n,)).copy()
        self.snap = np.broadcast_to(np.asarray(snap, np.float64), (self.n,)).copy()
        if np.any(self.min_cutoff <= 0) or np.any(self.d_cutoff <= 0) or np.any(self.beta < 0) or np.any(self.snap < 0):
            raise ValueError("One Euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0 and snap >= 0 on every channel")
        self.reset()

    def reset(self) -> None:
        """Forget all history; the next sample passes through unchanged."""
        self._x: np.ndarray | None = None   # last filtered value, (N,)
        self._dx = np.zeros(self.n)         # smoothed speed, signal units per second
        self._t = 0.0

    @property
    def value(self) -> np.ndarray | None:
        """The last output, or None before the first sample."""
        return None if self._x is None else self._x.copy()

    @property
    def t_last(self) -> float:
        """Time of the last sample (or seed), seconds."""
        return self._t

    def seed(self, x: np.ndarray, t: float) -> None:
        """Start from ``x`` at rest at time ``t``, as if it had been the last output.

        Used when a face comes back: the filter continues from what the avatar shows, so the
        first new sample moves it exactly as far as the filter would move on any step.
        """
        self._x = np.asarray(x, np.float64).reshape(self.n).copy()
        self._dx = np.zeros(self.n)
        self._t = float(t)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64).reshape(self.n)
        if self._x is None:
            self.seed(x, t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0.0:
            # The same capture time twice (a replayed or duplicated frame) carries no new timing;
            # dividing by it would make an infinite speed, so keep the last output.
            return self._x.copy()
        # Speed from the previous *filtered* value, as in the paper's Algorithm 1.
        dx = (x - self._x) / dt
        self._dx += smoothing_factor(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        jump = (self.snap > 0) & (np.abs(x - self._x) > self.snap)
        self._x = np.where(jump, x, self._x + smoothing_factor(cutoff, dt) * (x - self._x))
        self._t = float(t)
        return self._x.copy()
