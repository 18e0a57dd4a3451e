"""Face regions and the ``tracked`` mask: which parts of a FaceState were seen, which are not.

In headset mode a camera sees only the lower face; the headset (or nothing) owns the eyes and
brows. The estimator then marks those regions untracked, the bus carries the mask (schema v1's
optional ``tracked`` key, docs/protocol.md) and every adapter honours it: VRChat gets no parameter
for them (so the headset's own eye tracking keeps them), VMC and Live Link Face get neutral values.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.types import IDENTITY_QUATERNION, FaceState

# Each ARKit shape belongs to exactly one region; "head" is the pose (no shapes).
_PREFIXES: dict[str, tuple[str, ...]] = {
    "eyes": ("eyeBlink", "eyeSquint", "eyeWide"),
    "gaze": ("eyeLook",),           # and FaceState's gaze angles
    "brows": ("brow",),
    "nose": ("noseSneer",),
    "cheeks": ("cheek",),
    "jaw": ("jaw",),
    "mouth": ("mouth",),
    "tongue": ("tongue",),
}
REGIONS: tuple[str, ...] = (*_PREFIXES, "head")
REGION_SHAPES: dict[str, tuple[str, ...]] = {
    region: tuple(n for n in ARKIT_BLENDSHAPES if n.startswith(prefixes)) for region, prefixes in _PREFIXES.items()
}
REGION_SHAPES["head"] = ()
SHAPE_REGION: dict[str, str] = {n: r for r, names in REGION_SHAPES.items() for n in names}
assert len(SHAPE_REGION) == len(ARKIT_BLENDSHAPES)

# What a camera under (or below) a headset cannot see.
HEADSET_UNTRACKED: frozenset[str] = frozenset({"eyes", "gaze", "brows"})


def check_regions(names) -> frozenset[str]:
    """``names`` as a frozenset, or a ValueError naming an unknown region."""
    out = frozenset(names)
    unknown = out - set(REGIONS)
    if unknown:
        raise ValueError(f"unknown face region(s) {', '.join(sorted(unknown))}; known: {', '.join(REGIONS)}")
    return out


def untracked_shape_mask(untracked: frozenset[str]) -> np.ndarray:
    """(52,) bool, True for each shape in an untracked region."""
    return np.array([SHAPE_REGION[n] in untracked for n in ARKIT_BLENDSHAPES], bool)


def neutralise_untracked(state: FaceState) -> FaceState:
    """``state`` with untracked shapes at 0, untracked gaze straight ahead and an untracked head
    at rest: what VMC and Live Link Face send, since their packets have no "not tracked" value."""
    if not state.untracked:
        return state
    bs = np.where(untracked_shape_mask(state.untracked), 0.0, state.blendshapes).astype(np.float32)
    changes = {"blendshapes": bs}
    if "gaze" in state.untracked:
        changes.update(gaze_left=(0.0, 0.0), gaze_right=(0.0, 0.0))
    if "head" in state.untracked:
        changes.update(head_rotation=IDENTITY_QUATERNION)
    return replace(state, **changes)
