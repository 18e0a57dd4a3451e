"""Auto-neutral: learn the performer's resting reading of every shape while they use the tracker,
and measure expressions from it, for performers who have not saved a neutral calibration.

Why: on real faces the estimators (ours and MediaPipe's) read some faces' *rest* as an expression:
full lips as mouthPucker 0.3-0.7, high brows as browInnerUp 0.3, narrow eyes as eyeBlink 0.5
(training/evaluate_real.py lists them). An avatar then puckers or frowns at rest. A saved neutral
calibration (`avatar-bridge calibrate`) fixes that exactly; this stage does the same from the
stream for everyone else, and stands down when the active profile has a recorded neutral.

The baseline per shape tracks a low quantile of the reading: it rises slowly (time constant
``tau_s``; ``tau_warm_s`` during the first ``warm_s``, so a face that reads pucker 0.7 at rest is
absorbed in a few seconds, not a minute) and falls ``fall_speedup`` times faster, and at least with
a ``fall_tau_s`` time constant (rest is the lowest a shape reads between expressions; a performer
who starts crying with eyes squeezed shut must get the eyes back within a second of opening them).
A plain lower envelope (falling at once) would sit on the deepest jitter dip, so the rest itself
would read a few tenths once rescaled. No rest is taken above ``max_rest``: a shape held that high
is an expression, and rescaling from there would squash everything else into the last few tenths.
The defaults are chosen on the real-face dev set (`python -m training.evaluate_real`). It starts at the first
frame's value capped at ``prior``, so an expression held when tracking starts (eyes shut, a smile)
is not taken as rest. The jaw and mouth shapes learn only while the jaw is nearly closed: an open jaw
pulls the lips off their rest (mouthPucker reads 0 while speaking), which would drag their baseline
under the true rest, and speech in the first seconds would otherwise be learnt as the jaw's rest. Output: ``(v - base) / (1 - base)``, so rest reads 0 and a full expression
still reaches 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX

_MOUTH = np.array([n.startswith(("jaw", "mouth", "cheek")) for n in ARKIT_BLENDSHAPES])
_JAW = INDEX["jawOpen"]


@dataclass(frozen=True)
class AutoNeutralConfig:
    enabled: bool = True
    prior: float = 0.3      # the most the first frame may contribute to a shape's rest
    warm_s: float = 3.0     # learning fast for this long after the first face
    tau_warm_s: float = 1.0
    tau_s: float = 60.0     # afterwards: a held expression lifts the baseline by ~1.6 % of itself a second
    fall_speedup: float = 5.0  # the baseline falls this many times faster than it rises ...
    fall_tau_s: float = 1.0    # ... and at least this fast (time constant, seconds)
    max_rest: float = 0.7      # no shape's rest reads above this (eyes held shut are not a rest)
    jaw_closed: float = 0.2  # the mouth shapes learn only while jawOpen reads below this

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior <= 1.0 or not 0.0 <= self.jaw_closed <= 1.0:
            raise ValueError("auto_neutral prior and jaw_closed are between 0 and 1")
        if min(self.warm_s, self.tau_warm_s, self.tau_s) <= 0:
            raise ValueError("auto_neutral warm_s, tau_warm_s and tau_s are positive seconds")
        if self.fall_speedup < 1 or self.fall_tau_s <= 0 or not 0.0 <= self.max_rest < 1.0:
            raise ValueError("auto_neutral fall_speedup >= 1, fall_tau_s > 0 and 0 <= max_rest < 1")


class AutoNeutral:
    """The running rest baseline of the 52 shapes (see the module docstring)."""

    def __init__(self, config: AutoNeutralConfig = AutoNeutralConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.base: np.ndarray | None = None
        self._t0: float | None = None
        self._t_prev: float | None = None

    def __call__(self, v: np.ndarray, t: float) -> np.ndarray:
        c = self.config
        if self.base is None:
            self.base = np.minimum(v, c.prior).astype(np.float32)
            self._t0 = t
        else:
            dt = min(max(t - self._t_prev, 0.0), 0.5)   # a long gap is not a long observation
            tau = c.tau_warm_s if t - self._t0 < c.warm_s else c.tau_s
            rate = np.where(v < self.base, max(c.fall_speedup / tau, 1.0 / c.fall_tau_s), 1.0 / tau)
            moved = self.base + (v - self.base) * np.minimum(dt * rate, 1.0)
            learn = np.ones(len(v), bool) if v[_JAW] < c.jaw_closed else ~_MOUTH
            self.base = np.minimum(np.where(learn, moved, self.base), c.max_rest).astype(np.float32)
        self._t_prev = t
        return np.clip((v - self.base) / np.maximum(1.0 - self.base, 1e-3), 0.0, 1.0).astype(np.float32)
