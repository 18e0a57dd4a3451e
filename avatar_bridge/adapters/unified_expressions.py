"""ARKit -> VRCFaceTracking Unified Expressions (v2) parameter table, documented in docs/mappings.md.

Names are VRCFaceTracking's: each base shape of its ``UnifiedExpressions`` enum is exposed as
``v2/<Name>`` and the combined parameters as in ``UnifiedExpressionsParameters.cs``
(github.com/benaclejames/VRCFaceTracking). The ARKit -> Unified split follows VRCFT's own iPhone
(Live Link) module: one ARKit shape can drive several Unified shapes (mouthSmileLeft drives
MouthCornerPullLeft and MouthCornerSlantLeft, mouthPucker all four LipPucker quarters).

Every parameter is linear in the 52 ARKit weights: value = clip(bias + sum(weight * shape), lo, hi),
so the whole table is one matrix product per frame. Gaze parameters come from FaceState's gaze
angles instead (the estimator fits those to the eyeLook* shapes) and are listed in ``GAZE_PARAMS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX


@dataclass(frozen=True)
class UnifiedParam:
    """One VRCFT v2 parameter as a clipped linear blend of ARKit shapes."""

    name: str                                  # without the "v2/" prefix
    terms: tuple[tuple[str, float], ...]
    bias: float = 0.0
    lo: float = 0.0
    hi: float = 1.0


def _copy(name: str, arkit: str) -> UnifiedParam:
    return UnifiedParam(name, ((arkit, 1.0),))


def _sides(fmt_ue: str, fmt_ar: str) -> list[UnifiedParam]:
    return [_copy(fmt_ue.format(s), fmt_ar.format(s)) for s in ("Left", "Right")]


_BASE: list[UnifiedParam] = [
    *_sides("EyeSquint{}", "eyeSquint{}"),
    *_sides("EyeWide{}", "eyeWide{}"),
    *_sides("BrowPinch{}", "browDown{}"),
    *_sides("BrowLowerer{}", "browDown{}"),
    _copy("BrowInnerUpLeft", "browInnerUp"), _copy("BrowInnerUpRight", "browInnerUp"),
    *_sides("BrowOuterUp{}", "browOuterUp{}"),
    *_sides("CheekSquint{}", "cheekSquint{}"),
    _copy("CheekPuffLeft", "cheekPuff"), _copy("CheekPuffRight", "cheekPuff"),
    *_sides("NoseSneer{}", "noseSneer{}"),
    _copy("JawOpen", "jawOpen"), _copy("JawLeft", "jawLeft"), _copy("JawRight", "jawRight"),
    _copy("JawForward", "jawForward"),
    _copy("MouthClosed", "mouthClose"),
    *_sides("MouthUpper{}", "mouth{}"), *_sides("MouthLower{}", "mouth{}"),
    *_sides("MouthCornerPull{}", "mouthSmile{}"), *_sides("MouthCornerSlant{}", "mouthSmile{}"),
    *_sides("MouthFrown{}", "mouthFrown{}"),
    *_sides("MouthStretch{}", "mouthStretch{}"),
    *_sides("MouthDimple{}", "mouthDimple{}"),
    *_sides("MouthPress{}", "mouthPress{}"),
    *_sides("MouthLowerDown{}", "mouthLowerDown{}"),
    *_sides("MouthUpperUp{}", "mouthUpperUp{}"),
    _copy("MouthRaiserUpper", "mouthShrugUpper"), _copy("MouthRaiserLower", "mouthShrugLower"),
    *[_copy(f"LipPucker{q}", "mouthPucker") for q in ("UpperLeft", "UpperRight", "LowerLeft", "LowerRight")],
    *[_copy(f"LipFunnel{q}", "mouthFunnel") for q in ("UpperLeft", "UpperRight", "LowerLeft", "LowerRight")],
    _copy("LipSuckUpperLeft", "mouthRollUpper"), _copy("LipSuckUpperRight", "mouthRollUpper"),
    _copy("LipSuckLowerLeft", "mouthRollLower"), _copy("LipSuckLowerRight", "mouthRollLower"),
    _copy("TongueOut", "tongueOut"),
]

# Eyelids as VRCFT computes them: openness = 1 - blink; EyeLid = openness * .75 + wide * .25.
_EYES: list[UnifiedParam] = [
    UnifiedParam(f"EyeLid{s}", ((f"eyeBlink{s}", -0.75), (f"eyeWide{s}", 0.25)), bias=0.75) for s in ("Left", "Right")
] + [UnifiedParam(f"EyeClosed{s}", ((f"eyeBlink{s}", 1.0),)) for s in ("Left", "Right")]

# Combined parameters avatars commonly use, with VRCFT's formulas (signed ones span -1..1).
_COMBINED: list[UnifiedParam] = [
    UnifiedParam("JawX", (("jawRight", 1.0), ("jawLeft", -1.0)), lo=-1.0),
    UnifiedParam("MouthX", (("mouthRight", 1.0), ("mouthLeft", -1.0)), lo=-1.0),
    UnifiedParam("SmileFrownLeft", (("mouthSmileLeft", 1.0), ("mouthFrownLeft", -1.0)), lo=-1.0),
    UnifiedParam("SmileFrownRight", (("mouthSmileRight", 1.0), ("mouthFrownRight", -1.0)), lo=-1.0),
    UnifiedParam("BrowExpressionLeft", (("browInnerUp", 0.5), ("browOuterUpLeft", 0.5), ("browDownLeft", -1.0)), lo=-1.0),
    UnifiedParam("BrowExpressionRight", (("browInnerUp", 0.5), ("browOuterUpRight", 0.5), ("browDownRight", -1.0)), lo=-1.0),
    UnifiedParam("CheekPuffSuck", (("cheekPuff", 1.0),), lo=-1.0),
    UnifiedParam("LipSuckUpper", (("mouthRollUpper", 1.0),)),
    UnifiedParam("LipSuckLower", (("mouthRollLower", 1.0),)),
    UnifiedParam("LipFunnel", (("mouthFunnel", 1.0),)),
    UnifiedParam("LipPucker", (("mouthPucker", 1.0),)),
    UnifiedParam("MouthUpperUp", (("mouthUpperUpLeft", 0.5), ("mouthUpperUpRight", 0.5))),
    UnifiedParam("MouthLowerDown", (("mouthLowerDownLeft", 0.5), ("mouthLowerDownRight", 0.5))),
    UnifiedParam("NoseSneer", (("noseSneerLeft", 0.5), ("noseSneerRight", 0.5))),
    UnifiedParam("EyeSquint", (("eyeSquintLeft", 0.5), ("eyeSquintRight", 0.5))),
]

UNIFIED_PARAMS: tuple[UnifiedParam, ...] = tuple(_BASE + _EYES + _COMBINED)

# From FaceState gaze: X = tan(yaw) with + = the performer's right (VRCFT: ToYaw = atan(x)),
# Y = tan(pitch) with + = up. Driven by eyeLook{In,Out,Up,Down}{Left,Right} through the estimator.
GAZE_PARAMS: tuple[str, ...] = ("EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeY")
GAZE_SOURCES: tuple[str, ...] = tuple(n for n in ARKIT_BLENDSHAPES if n.startswith("eyeLook"))

PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in UNIFIED_PARAMS) + GAZE_PARAMS


def arkit_to_unified() -> dict[str, tuple[str, ...]]:
    """For docs and the coverage test: each ARKit shape -> the v2 parameters it drives."""
    out: dict[str, list[str]] = {n: [] for n in ARKIT_BLENDSHAPES}
    for p in UNIFIED_PARAMS:
        for arkit, _ in p.terms:
            out[arkit].append(p.name)
    for arkit in GAZE_SOURCES:
        side = "Left" if arkit.endswith("Left") else "Right"
        axis = "X" if ("In" in arkit or "Out" in arkit) else "Y"
        out[arkit].append(f"Eye{side}{axis}")
        if axis == "Y":
            out[arkit].append("EyeY")
    return {k: tuple(v) for k, v in out.items()}


def _matrix() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    w = np.zeros((len(UNIFIED_PARAMS), len(ARKIT_BLENDSHAPES)), np.float32)
    for i, p in enumerate(UNIFIED_PARAMS):
        for arkit, weight in p.terms:
            w[i, INDEX[arkit]] += weight
    bias = np.array([p.bias for p in UNIFIED_PARAMS], np.float32)
    lo = np.array([p.lo for p in UNIFIED_PARAMS], np.float32)
    hi = np.array([p.hi for p in UNIFIED_PARAMS], np.float32)
    return w, bias, lo, hi


WEIGHTS, BIAS, LO, HI = _matrix()


def unified_values(blendshapes: np.ndarray) -> np.ndarray:
    """(len(UNIFIED_PARAMS),) float32 values in ``UNIFIED_PARAMS`` order from 52 ARKit weights."""
    return np.clip(WEIGHTS @ np.asarray(blendshapes, np.float32) + BIAS, LO, HI)
