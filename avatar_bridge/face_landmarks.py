"""Constant tables for MediaPipe's 478-point face mesh: the indices the estimators read, and the
canonical 3D face for head pose.

Index names follow the performer: ``R_EYE_*`` is the performer's right eye, which appears on the
image's left in an unmirrored camera.
"""

from __future__ import annotations

import numpy as np

# Eyes: corners and three upper/lower lid pairs per eye.
R_EYE_OUTER, R_EYE_INNER = 33, 133
L_EYE_OUTER, L_EYE_INNER = 263, 362
R_EYE_LIDS = ((160, 144), (159, 145), (158, 153))
L_EYE_LIDS = ((387, 373), (386, 374), (385, 380))
# Iris centres (refine_landmarks=True adds 468..477).
R_IRIS, L_IRIS = 468, 473

# Mouth.
LIP_INNER_TOP, LIP_INNER_BOTTOM = 13, 14
R_MOUTH_CORNER, L_MOUTH_CORNER = 61, 291

# Brows (inner, middle, outer) per side.
R_BROW = (107, 105, 70)
L_BROW = (336, 334, 300)


def load_canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """(points (478, 3) metres in head axes, indices of the landmarks that stay put under expressions).

    Built by ``python -m training.make_canonical_face`` from ICT-FaceKit renders (MIT, USC ICT):
    every landmark triangulated from 21 known views of the neutral head, so it matches what
    MediaPipe reports on a face, not a hand-picked vertex table.
    """
    from importlib import resources

    with resources.files("avatar_bridge").joinpath("assets/canonical_face.npz").open("rb") as fh:
        data = np.load(fh)
        return data["points"].astype(np.float64), data["rigid"].astype(np.int64)
