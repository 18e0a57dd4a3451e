"""Synthetic sequences: what a person's face does over a second or two, and how a webcam spoils it.

``sample_sequence`` draws one sequence's appearance (identity, skin, light, background, camera)
and per-frame tracks (expressions that look like people, gaze fixations and saccades, head
motion) as ``RenderParams``; ``Augmenter`` degrades the rendered images the way cheap cameras do
(exposure, blur, noise, JPEG, low resolution, a partial occluder). The ground truth of a
horizontally flipped frame is ``avatar_bridge.signal.mirror.mirror_labels``. numpy + OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from training.render import RenderParams, gaze_blendshapes, random_params

N = len(ARKIT_BLENDSHAPES)
MOVABLE = [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n != "tongueOut"]   # ICT has no tongue


@dataclass(frozen=True)
class SequenceConfig:
    """How sequences are drawn (angles in degrees, times in frames at ``fps``)."""

    frames: int = 32
    fps: float = 30.0
    max_head_deg: tuple[float, float, float] = (35.0, 22.0, 18.0)   # largest yaw, pitch, roll of a sequence's centre pose
    head_motion: float = 8.0           # degrees of smooth wander within a sequence
    fill: tuple[float, float] = (0.38, 0.62)  # face height as a fraction of the image
    p_held: float = 0.65               # a held expression (smile, frown, brow raise, ...)
    p_speech: float = 0.4
    p_asymmetric: float = 0.3
    blink_interval_s: tuple[float, float] = (0.4, 3.0)   # denser than life, so blinks are well sampled
    p_wink: float = 0.12
    max_free_shapes: int = 5           # shapes moving on their own tracks: 1 to this many per sequence


# Held expressions people make, as {shape: relative weight}; "L"/"R" suffixes expand to both sides.
ARCHETYPES: dict[str, dict[str, float]] = {
    "smile": {"mouthSmile": 1.0, "cheekSquint": 0.5, "eyeSquint": 0.3, "mouthDimple": 0.2},
    "grin": {"mouthSmile": 1.0, "mouthStretch": 0.4, "jawOpen": 0.25, "mouthUpperUp": 0.3, "cheekSquint": 0.6},
    "frown": {"mouthFrown": 1.0, "browDown": 0.4, "mouthShrugLower": 0.3},
    "brow_raise": {"browInnerUp": 1.0, "browOuterUp": 0.9},
    "surprise": {"browInnerUp": 1.0, "browOuterUp": 1.0, "eyeWide": 0.8, "jawOpen": 0.5},
    "anger": {"browDown": 1.0, "noseSneer": 0.5, "mouthPress": 0.6, "eyeSquint": 0.4},
    "disgust": {"noseSneer": 1.0, "mouthUpperUp": 0.7, "browDown": 0.4, "cheekSquint": 0.3},
    "sad": {"browInnerUp": 0.8, "mouthFrown": 0.7, "mouthShrugLower": 0.4},
    "pucker": {"mouthPucker": 1.0, "mouthFunnel": 0.3},
    "funnel": {"mouthFunnel": 1.0, "jawOpen": 0.25},
    "puff": {"cheekPuff": 1.0, "mouthClose": 0.2},
    "lips_in": {"mouthRollLower": 1.0, "mouthRollUpper": 0.8, "mouthPress": 0.3},
    "shrug": {"mouthShrugLower": 1.0, "mouthShrugUpper": 0.6, "mouthPress": 0.3},
    "stretch": {"mouthStretch": 1.0, "mouthDimple": 0.4, "mouthLowerDown": 0.3},
    "squint": {"eyeSquint": 1.0, "cheekSquint": 0.6},
    "mouth_side": {"mouthLeft": 1.0},
    "mouth_side_r": {"mouthRight": 1.0},
    "jaw_side": {"jawLeft": 1.0, "jawOpen": 0.2},
    "jaw_side_r": {"jawRight": 1.0, "jawOpen": 0.2},
    "jaw_forward": {"jawForward": 1.0, "jawOpen": 0.15},
    "open_wide": {"jawOpen": 1.0, "mouthLowerDown": 0.5, "mouthUpperUp": 0.3},
    "closed_open_jaw": {"jawOpen": 0.5, "mouthClose": 0.5},
}


def _expand(archetype: dict[str, float], left: float, right: float) -> np.ndarray:
    w = np.zeros(N, np.float32)
    for name, value in archetype.items():
        if name in INDEX:
            w[INDEX[name]] += value * (left + right) / 2
        else:
            w[INDEX[name + "Left"]] += value * left
            w[INDEX[name + "Right"]] += value * right
    return w


def _smooth_keyframes(rng: np.random.Generator, frames: int, gap: tuple[int, int], sample) -> np.ndarray:
    """A smoothstep-interpolated track through random keyframes every ``gap`` frames."""
    times, values = [-int(rng.integers(0, gap[1]))], [sample()]
    while times[-1] < frames:
        times.append(times[-1] + int(rng.integers(*gap)))
        values.append(sample())
    t = np.arange(frames)
    k = np.searchsorted(times, t, side="right") - 1
    a, b = np.asarray(times)[k], np.asarray(times)[k + 1]
    s = (t - a) / np.maximum(b - a, 1)
    s = s * s * (3 - 2 * s)
    v = np.asarray(values, np.float32)
    return v[k] * (1 - s[:, None] if v.ndim > 1 else 1 - s) + v[k + 1] * (s[:, None] if v.ndim > 1 else s)


def _envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """On/off of a held expression: already on, or ramping on/off somewhere in the sequence."""
    env = np.ones(frames, np.float32)
    if rng.random() < 0.5:
        start, ramp = int(rng.integers(-8, frames - 4)), int(rng.integers(3, 9))
        env = np.clip((np.arange(frames) - start) / ramp, 0, 1)
    if rng.random() < 0.3:
        stop, ramp = int(rng.integers(4, frames + 8)), int(rng.integers(3, 9))
        env = env * np.clip((stop - np.arange(frames)) / ramp, 0, 1)
    return env.astype(np.float32)


def blink_track(rng: np.random.Generator, cfg: SequenceConfig) -> np.ndarray:
    """(T, 2) eyeBlink (left, right): ~100 ms closing, a short hold, ~150 ms opening; some winks."""
    out = np.zeros((cfg.frames, 2), np.float32)
    t = -rng.uniform(0, cfg.blink_interval_s[1]) * cfg.fps
    while t < cfg.frames:
        close, hold, open_ = rng.uniform(2, 3.5), rng.uniform(0, 2.5), rng.uniform(3, 5.5)
        peak = rng.uniform(0.85, 1.0) if rng.random() < 0.85 else rng.uniform(0.4, 0.8)
        x = np.arange(cfg.frames) - t
        shape = np.where(x < 0, 0, np.where(x < close, x / close, np.where(
            x < close + hold, 1.0, np.clip(1 - (x - close - hold) / open_, 0, 1))))
        sides = np.array([peak, peak * rng.uniform(0.9, 1.0)])
        if rng.random() < cfg.p_wink:
            sides[rng.integers(0, 2)] = rng.uniform(0.0, 0.15)
        rng.shuffle(sides)
        out = np.maximum(out, shape[:, None] * sides)
        t += rng.uniform(*cfg.blink_interval_s) * cfg.fps
    if rng.random() < 0.1:      # a lowered-lid squint held through the sequence
        out = np.maximum(out, rng.uniform(0.2, 0.55))
    return out


def speech_track(rng: np.random.Generator, cfg: SequenceConfig) -> np.ndarray:
    """(T, 52) jaw and lip motion at syllable rate (3-6 Hz) with per-syllable lip shapes."""
    t = np.arange(cfg.frames) / cfg.fps
    rate = rng.uniform(3.0, 6.0)
    phase = 2 * math.pi * rate * t + rng.uniform(0, 2 * math.pi)
    amp = _smooth_keyframes(rng, cfg.frames, (4, 10), lambda: rng.uniform(0.1, 0.7))
    jaw = amp * (0.5 - 0.5 * np.cos(phase))
    out = np.zeros((cfg.frames, N), np.float32)
    out[:, INDEX["jawOpen"]] = jaw
    syllable = np.floor((phase - phase[0]) / (2 * math.pi)).astype(int)
    shapes = ["mouthFunnel", "mouthPucker", "mouthClose", "mouthRollLower", "mouthLowerDownLeft",
              "mouthUpperUpLeft", "mouthStretchLeft", "mouthPressLeft", "mouthShrugUpper"]
    for s in np.unique(syllable):
        name = shapes[rng.integers(0, len(shapes))]
        w = rng.uniform(0.2, 0.8) * (jaw[syllable == s] / max(jaw.max(), 1e-3) if name != "mouthClose" else 1.0)
        for side_name in {name, name.replace("Left", "Right")}:
            out[syllable == s, INDEX[side_name]] = w
    return out


def gaze_track(rng: np.random.Generator, cfg: SequenceConfig) -> np.ndarray:
    """(T, 4) gaze (left yaw, pitch, right yaw, pitch) radians: fixations joined by saccades."""
    out = np.zeros((cfg.frames, 4), np.float32)
    target = rng.uniform([-0.5, -0.35], [0.5, 0.35])
    f = 0
    while f < cfg.frames:
        hold = int(rng.integers(6, 30))
        new = rng.uniform([-0.5, -0.35], [0.5, 0.35]) if rng.random() < 0.8 else np.zeros(2)
        verge = rng.normal(0, 0.03)
        for k in range(f, min(f + hold, cfg.frames)):
            s = min(1.0, (k - f + 1) / 2.0)             # a saccade takes ~2 frames
            g = target * (1 - s) + new * s
            out[k] = [g[0] - verge, g[1], g[0] + verge, g[1]]
        target, f = new, f + hold
    return out


def expression_track(rng: np.random.Generator, cfg: SequenceConfig) -> np.ndarray:
    """(T, 52) ARKit weights: held expressions, sparse independent shapes, speech and blinks."""
    T = cfg.frames
    bs = np.zeros((T, N), np.float32)
    if rng.random() < cfg.p_held:
        for _ in range(1 + int(rng.random() < 0.3)):        # sometimes two at once
            arch = ARCHETYPES[list(ARCHETYPES)[rng.integers(0, len(ARCHETYPES))]]
            left = right = rng.uniform(0.25, 1.0)
            if rng.random() < cfg.p_asymmetric:
                (left, right) = (left, left * rng.uniform(0, 0.5)) if rng.random() < 0.5 else (left * rng.uniform(0, 0.5), left)
            bs += _envelope(rng, T)[:, None] * _expand(arch, left, right)[None]
    # Independent shapes so every one of the 51 is seen alone, not only inside an archetype.
    for idx in rng.choice(MOVABLE, size=int(rng.integers(1, cfg.max_free_shapes + 1)), replace=False):
        bs[:, idx] += _smooth_keyframes(rng, T, (5, 16), lambda: rng.uniform(0, 1) ** 1.5 if rng.random() < 0.7 else 0.0)
    if rng.random() < cfg.p_speech:
        bs = np.maximum(bs, speech_track(rng, cfg))
    blink = blink_track(rng, cfg)
    bs[:, INDEX["eyeBlinkLeft"]] = np.maximum(bs[:, INDEX["eyeBlinkLeft"]], blink[:, 0])
    bs[:, INDEX["eyeBlinkRight"]] = np.maximum(bs[:, INDEX["eyeBlinkRight"]], blink[:, 1])
    bs[:, INDEX["tongueOut"]] = 0.0
    return np.clip(bs, 0.0, 1.0)


def sample_sequence(rng: np.random.Generator, cfg: SequenceConfig = SequenceConfig()) -> list[RenderParams]:
    """One sequence of ``cfg.frames`` RenderParams sharing identity, appearance and camera."""
    base = random_params(rng, fill=cfg.fill)
    T = cfg.frames
    bs = expression_track(rng, cfg)
    gaze = gaze_track(rng, cfg)
    centre = rng.uniform(-1, 1, 3) * np.asarray(cfg.max_head_deg)
    wander = _smooth_keyframes(rng, T, (8, 24), lambda: rng.normal(0, cfg.head_motion / 2, 3)) * rng.uniform(0, 1)
    # (yaw, pitch, roll) radians, ARKit sense (pitch + = nose down); the pitch is negated so that
    # cached sets made when this read "chin up" regenerate from the same seeds unchanged.
    angles = np.radians(centre[None] + wander) * [1.0, -1.0, 1.0]
    x0, y0, z0 = base.head_position
    drift = _smooth_keyframes(rng, T, (8, 24), lambda: rng.normal(0, 0.01, 3))
    params = []
    for k in range(T):
        gl, gr = (float(gaze[k, 0]), float(gaze[k, 1])), (float(gaze[k, 2]), float(gaze[k, 3]))
        params.append(replace(
            base, blendshapes=gaze_blendshapes(bs[k], gl, gr), gaze_left=gl, gaze_right=gr,
            head_rotation=from_yaw_pitch_roll(*(float(a) for a in angles[k])),
            head_position=(x0 + drift[k, 0], y0 + drift[k, 1], z0 + drift[k, 2] * 2)))
    return params


@dataclass(frozen=True)
class AugmentConfig:
    """How often (``p_*``: the chance a sequence gets it) and how strongly (a uniform range) each
    camera degradation is drawn."""

    p_exposure: float = 0.7
    gain: tuple[float, float] = (0.55, 1.4)          # brightness factor
    gamma: tuple[float, float] = (0.7, 1.4)
    tint: tuple[float, float] = (0.9, 1.1)           # per colour channel
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.6)     # pixels
    p_noise: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 8.0)    # grey levels
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 90)
    p_lowres: float = 0.2
    lowres_scale: tuple[float, float] = (0.4, 0.7)   # downscale factor before scaling back up
    p_occluder: float = 0.12


class Augmenter:
    """Per-sequence camera degradations, drawn once per sequence and applied to every frame."""

    def __init__(self, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> None:
        c, self.rng = config, rng
        self.gain = rng.uniform(*c.gain) if rng.random() < c.p_exposure else 1.0
        self.gamma = rng.uniform(*c.gamma) if rng.random() < c.p_exposure else 1.0
        self.tint = rng.uniform(*c.tint, 3) if rng.random() < c.p_exposure else np.ones(3)
        self.blur = rng.uniform(*c.blur_sigma) if rng.random() < c.p_blur else 0.0
        self.noise = rng.uniform(*c.noise_sigma) if rng.random() < c.p_noise else 0.0
        self.jpeg = int(rng.integers(*c.jpeg_quality)) if rng.random() < c.p_jpeg else 0
        self.lowres = rng.uniform(*c.lowres_scale) if rng.random() < c.p_lowres else 0.0
        self.occluder = None
        if rng.random() < c.p_occluder:   # a hand/object patch near one landmark, sized to the face
            self.occluder = dict(landmark=int(rng.integers(0, 68)), size=rng.uniform(0.12, 0.28),
                                 offset=rng.normal(0, 0.08, 2), color=rng.uniform(0, 255, 3),
                                 ellipse=bool(rng.random() < 0.6), angle=rng.uniform(0, 180))

    def __call__(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        img = image.astype(np.float32)
        if self.occluder is not None:
            o = self.occluder
            face = float(np.ptp(landmarks68[:, 1])) or 50.0
            cx, cy = landmarks68[o["landmark"]] + o["offset"] * face
            r = max(2, int(o["size"] * face))
            if o["ellipse"]:
                cv2.ellipse(img, (int(cx), int(cy)), (r, int(r * 0.6)), o["angle"], 0, 360, o["color"].tolist(), -1)
            else:
                cv2.rectangle(img, (int(cx - r), int(cy - r // 2)), (int(cx + r), int(cy + r // 2)), o["color"].tolist(), -1)
        img = 255.0 * np.clip(img / 255.0 * self.gain * self.tint, 0, 1) ** self.gamma
        if self.lowres:
            h, w = img.shape[:2]
            img = cv2.resize(cv2.resize(img, (int(w * self.lowres), int(h * self.lowres)), interpolation=cv2.INTER_AREA),
                             (w, h), interpolation=cv2.INTER_LINEAR)
        if self.blur:
            img = cv2.GaussianBlur(img, (0, 0), self.blur)
        if self.noise:
            img += self.rng.normal(0, self.noise, img.shape).astype(np.float32)
        out = np.clip(img, 0, 255).astype(np.uint8)
        if self.jpeg:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return out
