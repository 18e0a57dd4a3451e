"""Accuracy numbers for blendshape estimators against synthetic ground truth (numpy only)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from avatar_bridge.arkit import ARKIT_BLENDSHAPES

GROUPS: dict[str, list[int]] = {
    "eyes": [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n.startswith(("eyeBlink", "eyeSquint", "eyeWide"))],
    "gaze": [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n.startswith("eyeLook")],
    "brows": [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n.startswith("brow")],
    "jaw/mouth": [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n.startswith(("jaw", "mouth"))],
    "cheek/nose": [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n.startswith(("cheek", "nose"))],
}
BLINKS = [ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")]
MOVING_STD = 0.05       # a shape "moves" in a set when its true weight's std exceeds this


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation; 0 when either side is constant (a constant prediction explains nothing)."""
    sa, sb = a.std(), b.std()
    if sa < 1e-8 or sb < 1e-8:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float(np.sum(pred & true))
    denom = float(np.sum(pred) + np.sum(true))
    return 2 * tp / denom if denom else 1.0


def rotation_error_deg(q_pred: np.ndarray, q_true: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation between predicted and true quaternions (x, y, z, w)."""
    r = Rotation.from_quat(q_pred) * Rotation.from_quat(q_true).inv()
    return np.degrees(r.magnitude())


def score(pred_bs: np.ndarray, true_bs: np.ndarray, pred_q: np.ndarray, true_q: np.ndarray,
          pred_gaze: np.ndarray, true_gaze: np.ndarray) -> dict[str, float]:
    """All metrics over N frames: bs (N, 52), quats (N, 4), gaze (N, 4) radians."""
    out: dict[str, float] = {}
    err = np.abs(pred_bs - true_bs)
    for group, idx in GROUPS.items():
        out[f"mae/{group}"] = float(err[:, idx].mean())
    out["mae/all"] = float(err[:, [i for i, n in enumerate(ARKIT_BLENDSHAPES) if n != "tongueOut"]].mean())
    moving = [i for i in range(true_bs.shape[1]) if true_bs[:, i].std() > MOVING_STD]
    corr = [pearson(pred_bs[:, i], true_bs[:, i]) for i in moving]
    out["corr/mean_moving"] = float(np.mean(corr)) if corr else float("nan")
    for group, idx in GROUPS.items():       # an estimator that leaves a group at 0 scores 0 there
        in_group = [c for i, c in zip(moving, corr) if i in idx]
        out[f"corr/{group}"] = float(np.mean(in_group)) if in_group else float("nan")
    out["corr/n_moving"] = float(len(moving))
    out["blink_f1"] = f1(pred_bs[:, BLINKS] > 0.5, true_bs[:, BLINKS] > 0.5)
    pose = rotation_error_deg(pred_q, true_q)
    out["head_deg/mean"] = float(pose.mean())
    out["head_deg/median"] = float(np.median(pose))
    out["gaze_deg/mean"] = float(np.degrees(np.abs(pred_gaze - true_gaze)).mean())
    out["per_shape_corr"] = {ARKIT_BLENDSHAPES[i]: c for i, c in zip(moving, corr)}  # type: ignore[assignment]
    return out
