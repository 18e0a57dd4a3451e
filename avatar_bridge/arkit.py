"""The 52 ARKit blendshape names, in the one order everything indexes by.

The order is Apple's ``ARFaceAnchor.BlendShapeLocation`` as streamed by Live Link Face and
Unreal's ``EARFaceBlendShape`` (eyeBlinkLeft ... tongueOut). Left/Right are the performer's own.
"""

from __future__ import annotations

import zlib

ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
assert len(ARKIT_BLENDSHAPES) == 52

INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES)}

# Sent on the wire so a reader can tell a name table it was not built for (schema v1 "names_hash").
NAMES_HASH: int = zlib.crc32(",".join(ARKIT_BLENDSHAPES).encode("ascii"))


def _mirror_name(name: str) -> str:
    if name.endswith("Left"):
        return name[: -len("Left")] + "Right"
    if name.endswith("Right"):
        return name[: -len("Right")] + "Left"
    return name


# MIRROR_PERMUTATION[i] is the index whose value shape i takes when the face is mirrored.
MIRROR_PERMUTATION: tuple[int, ...] = tuple(INDEX[_mirror_name(n)] for n in ARKIT_BLENDSHAPES)
# eyeLookIn/Out are relative to each eye, so a mirror only swaps sides; mouthLeft/Right and
# jawLeft/Right name a direction, so swapping them is exactly the mirror too.
