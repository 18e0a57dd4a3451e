"""The signal chain: the stage between the estimator and the bus (docs/signal_chain.md).

Per present frame, in this order:

0. auto-neutral — the performer's resting reading learnt from the stream and taken off
   (signal/auto_neutral.py), only while the profile has no recorded neutral: the stand-in for a
   neutral calibration until one is saved.
1. calibration — the profile's offset/range/deadzone/gamma/gain/clamp. First, because a profile
   is recorded on the raw estimator output of the performer's own (unmirrored) Left/Right, and
   because it puts every performer on the same 0..1 scale, so one set of filter parameters fits all.
2. blink link — on calibrated values, where "both eyes closed" means the same number for both eyes.
3. mirror — a pure relabelling (swap sides, flip yaw/roll); before the filter so filter state is
   kept per *output* channel, which is what the avatar shows.
4. smoothing — the One Euro filter, per channel, after every non-linear step, so the last jitter
   of a deadzone edge or a gamma curve is smoothed too, and nothing after it adds any.
5. face-lost handling — last, because it must act on exactly what the avatar was showing: hold the
   last output for ``hold_s``, then ease to the neutral state over ``ease_s``; when the face comes
   back the filter restarts *from the shown values*, so the return moves no further than the
   filter moves on any step.

Gaze and the eyeLook* shapes describe the same eye rotation: for the left eye, yaw ~
(eyeLookOutLeft - eyeLookInLeft) * EYE_LOOK_YAW_RAD and pitch ~ (eyeLookUpLeft -
eyeLookDownLeft) * EYE_LOOK_PITCH_RAD (the right eye's "out" is towards the performer's right,
so its yaw has the opposite sign). They share the ``gaze`` filter group so they lag alike, and
the mirror swaps both together. ``gaze_from_eye_look`` derives gaze for an estimator without it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.signal.auto_neutral import AutoNeutral, AutoNeutralConfig
from avatar_bridge.signal.calibration import Calibrator
from avatar_bridge.signal.mirror import mirror_face_state
from avatar_bridge.signal.one_euro import OneEuroFilter
from avatar_bridge.signal.profile import FILTER_GROUPS, Profile
from avatar_bridge.types import FaceState

log = logging.getLogger(__name__)

# Eye rotation at which an eyeLook* coefficient reaches 1 (ARKit's rig saturates near these).
EYE_LOOK_YAW_RAD = math.radians(30.0)
EYE_LOOK_PITCH_RAD = math.radians(25.0)

# The head position is filtered in decimetres so that one beta fits the head: a 0.5 rad turn
# and a 5 cm lean take about as long and look about as big on an avatar.
HEAD_POSITION_SCALE = 10.0

N_SHAPES = len(ARKIT_BLENDSHAPES)
# Filter channel layout: 52 blendshapes, gaze (l yaw, l pitch, r yaw, r pitch), quaternion xyzw, position xyz.
_GAZE = slice(N_SHAPES, N_SHAPES + 4)
_QUAT = slice(N_SHAPES + 4, N_SHAPES + 8)
_POS = slice(N_SHAPES + 8, N_SHAPES + 11)
N_CHANNELS = N_SHAPES + 11

_BLINK_L, _BLINK_R = INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]


def blendshape_group(name: str) -> str:
    """Which filter group a blendshape belongs to: eyes (blink/squint/wide), gaze (eyeLook*),
    brows, or mouth (jaw, mouth, cheeks, nose, tongue: everything of the lower face)."""
    if name.startswith("eyeLook"):
        return "gaze"
    if name.startswith("eye"):
        return "eyes"
    if name.startswith("brow"):
        return "brows"
    return "mouth"


@dataclass(frozen=True)
class FilterParams:
    """One Euro parameters for a group: ``min_cutoff`` Hz (jitter at rest), ``beta`` per signal
    unit (lag on fast moves), ``d_cutoff`` Hz (smoothing of the speed estimate), ``snap`` (a jump
    larger than this passes unfiltered; 0 = off; see signal/one_euro.py)."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0
    snap: float = 0.0


@dataclass(frozen=True)
class SignalChainConfig:
    """Switches and tuning of the signal chain. Filter defaults come from
    ``benchmarks/bench_signal_chain.py`` (see docs/signal_chain.md for the numbers)."""

    smoothing: bool = True
    calibration: bool = True
    mirror: bool = False
    link_blinks: bool = False
    # With link_blinks, eyes whose blink values differ by more than this are a wink and kept apart.
    wink_threshold: float = 0.5
    hold_s: float = 0.5     # after the face is lost, keep showing the last state this long ...
    ease_s: float = 1.0     # ... then ease to neutral over this long
    auto_neutral: AutoNeutralConfig = AutoNeutralConfig()
    # Units: blendshapes 0..1, gaze radians, head quaternion components (~ half the angle in
    # radians) and position in decimetres; beta is per unit/second of each.
    # gaze, brows, head: `benchmarks/bench_signal_chain.py --search`, least jitter with lag <= 3
    # (gaze) and 4 (brows, head) frames at 30 fps. eyes and mouth: chosen on the real-face dev set
    # (`python -m training.evaluate_real`): the old eyes (0.6, 3.0) halved real blinks' peaks, so the
    # eyes now filter hard at rest and snap past a blink-sized jump (real still-face jitter drops
    # ~3x, a 3-frame blink keeps its full depth); the mouth's high beta lets real jaw opens through.
    eyes: FilterParams = FilterParams(min_cutoff=0.3, beta=1.0, d_cutoff=1.0, snap=0.25)
    gaze: FilterParams = FilterParams(min_cutoff=0.4, beta=5.0, d_cutoff=0.5)
    brows: FilterParams = FilterParams(min_cutoff=0.2, beta=2.0, d_cutoff=0.5)
    mouth: FilterParams = FilterParams(min_cutoff=0.3, beta=10.0, d_cutoff=1.0)
    head: FilterParams = FilterParams(min_cutoff=0.2, beta=20.0, d_cutoff=0.5)

    def group(self, name: str) -> FilterParams:
        return getattr(self, name)


def channel_groups() -> list[str]:
    """The filter group of each of the N_CHANNELS filter channels, in layout order."""
    return [blendshape_group(n) for n in ARKIT_BLENDSHAPES] + ["gaze"] * 4 + ["head"] * 7


def gaze_from_eye_look(blendshapes: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """(gaze_left, gaze_right) as (yaw, pitch) radians implied by the eyeLook* coefficients."""
    b = np.asarray(blendshapes, np.float32)

    def eye(side: str, out_sign: float) -> tuple[float, float]:
        yaw = out_sign * (b[INDEX[f"eyeLookOut{side}"]] - b[INDEX[f"eyeLookIn{side}"]]) * EYE_LOOK_YAW_RAD
        pitch = (b[INDEX[f"eyeLookUp{side}"]] - b[INDEX[f"eyeLookDown{side}"]]) * EYE_LOOK_PITCH_RAD
        return float(yaw), float(pitch)

    # yaw > 0 is towards the performer's left: the left eye's "out", the right eye's "in".
    return eye("Left", 1.0), eye("Right", -1.0)


def link_blinks(blendshapes: np.ndarray, wink_threshold: float) -> np.ndarray:
    """Both eyes close together (to the more closed one) unless they differ by more than
    ``wink_threshold``, which is a wink. The more closed eye wins because the eye the head is
    turned away from is foreshortened and under-reads."""
    b = np.array(blendshapes, np.float32, copy=True)
    left, right = b[_BLINK_L], b[_BLINK_R]
    if abs(left - right) <= wink_threshold:
        b[_BLINK_L] = b[_BLINK_R] = max(left, right)
    return b


def _state_to_vector(s: FaceState) -> np.ndarray:
    v = np.empty(N_CHANNELS, np.float64)
    v[:N_SHAPES] = s.blendshapes
    v[_GAZE] = (*s.gaze_left, *s.gaze_right)
    v[_QUAT] = s.head_rotation
    v[_POS] = np.asarray(s.head_position, np.float64) * HEAD_POSITION_SCALE
    return v


def _vector_to_state(v: np.ndarray, like: FaceState) -> FaceState:
    q = v[_QUAT]
    norm = float(np.linalg.norm(q))
    q = q / norm if norm > 1e-9 else np.array([0.0, 0.0, 0.0, 1.0])
    return replace(
        like,
        blendshapes=v[:N_SHAPES].astype(np.float32),
        gaze_left=(float(v[N_SHAPES]), float(v[N_SHAPES + 1])),
        gaze_right=(float(v[N_SHAPES + 2]), float(v[N_SHAPES + 3])),
        head_rotation=tuple(float(c) for c in q),
        head_position=tuple(float(c) for c in v[_POS] / HEAD_POSITION_SCALE),
    )


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


class SignalChain:
    """Calibration, blink link, mirror, One Euro smoothing and face-lost hold/ease for FaceStates.

    Call ``process`` for every frame, with ``FaceState.neutral(face_present=False, ...)`` when the
    tracker found no face. Not thread-safe: serve control requests from the frame loop's thread.
    """

    def __init__(self, config: SignalChainConfig | None = None, profile: Profile | None = None) -> None:
        self.config = config or SignalChainConfig()
        self.profile = profile or Profile()
        self._filter = self._make_filter()
        # Calibration watches the raw estimator output and, when it has enough, hands back a profile.
        self.calibrator = Calibrator()
        self.auto_neutral = AutoNeutral(self.config.auto_neutral)
        self.reset()

    # --- public ---------------------------------------------------------------------------------

    def filter_params(self, group: str) -> FilterParams:
        """The group's parameters in force: the config's, overridden key by key by the profile."""
        base = self.config.group(group)
        return replace(base, **self.profile.filter.get(group, {}))

    def set_profile(self, profile: Profile) -> None:
        """Use another profile from the next frame on (its filter overrides included)."""
        self.profile = profile
        old = self._filter
        self._filter = self._make_filter()
        if old.value is not None:
            self._filter.seed(old.value, old.t_last)

    def reset(self) -> None:
        """Forget all history (filter, last face, face-lost timer); a calibration in progress is cancelled."""
        self._filter.reset()
        self._last_out: FaceState | None = None   # last present output
        self._shown: FaceState | None = None      # last output of any kind (what the avatar shows)
        self._lost_since: float | None = None
        self._t_prev: float | None = None
        self.auto_neutral.reset()
        self.calibrator.cancel("cancelled by reset")

    def process(self, state: FaceState) -> FaceState:
        """One frame in, one frame out (always; ``face_present`` False while the face is lost)."""
        t = float(state.t_capture)
        profile = self.calibrator.observe(state, self.profile)
        if profile is not None:
            self.set_profile(profile)
            self.calibrator.finished(profile)
        if not state.face_present:
            out = self._absent(state)
        else:
            out = self._present(state)
        self._t_prev = t
        self._shown = out
        return out

    # --- frame paths ----------------------------------------------------------------------------

    def _make_filter(self) -> OneEuroFilter:
        groups = channel_groups()
        params = {g: self.filter_params(g) for g in FILTER_GROUPS}
        return OneEuroFilter(
            N_CHANNELS,
            min_cutoff=np.array([params[g].min_cutoff for g in groups]),
            beta=np.array([params[g].beta for g in groups]),
            d_cutoff=np.array([params[g].d_cutoff for g in groups]),
            snap=np.array([params[g].snap for g in groups]),
        )

    def _present(self, state: FaceState) -> FaceState:
        cfg = self.config
        s = state
        if cfg.calibration and cfg.auto_neutral.enabled and not self.profile.has_neutral:
            s = replace(s, blendshapes=self.auto_neutral(s.blendshapes, float(s.t_capture)))
        if cfg.calibration:
            s = replace(s, blendshapes=self.profile.apply(s.blendshapes))
        if cfg.link_blinks:
            s = replace(s, blendshapes=link_blinks(s.blendshapes, cfg.wink_threshold))
        if cfg.mirror:
            s = mirror_face_state(s)
        if cfg.smoothing:
            s = self._smooth(s)
        self._lost_since = None
        self._last_out = s
        return s

    def _smooth(self, s: FaceState) -> FaceState:
        t = float(s.t_capture)
        v = _state_to_vector(s)
        returning = self._shown is not None and not self._shown.face_present
        if returning and self._t_prev is not None:
            # Restart from what the avatar shows now, one frame ago in time: the step to the new
            # face is then an ordinary filter step, however long the face was gone.
            self._filter.seed(_state_to_vector(self._shown), self._t_prev)
        prev = self._filter.value
        if prev is not None and float(np.dot(v[_QUAT], prev[_QUAT])) < 0.0:
            v[_QUAT] = -v[_QUAT]  # q and -q are one rotation; take the one next to the filter's
        return _vector_to_state(self._filter(v, t), s)

    def _absent(self, state: FaceState) -> FaceState:
        t = float(state.t_capture)
        last = self._last_out
        if last is None:
            return state
        if self._lost_since is None:
            self._lost_since = float(last.t_capture)
        lost = t - self._lost_since
        cfg = self.config
        if lost <= cfg.hold_s:
            u = 0.0
        elif cfg.ease_s <= 0:
            u = 1.0
        else:
            u = _smoothstep((lost - cfg.hold_s) / cfg.ease_s)
        a, b = _state_to_vector(last), _state_to_vector(state)
        if float(np.dot(a[_QUAT], b[_QUAT])) < 0.0:
            b[_QUAT] = -b[_QUAT]
        out = _vector_to_state(a + u * (b - a), state)  # normalised lerp for the quaternion
        return replace(out, face_present=False, confidence=0.0)
