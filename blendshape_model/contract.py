"""The network's input contract: what the runtime must feed it, written into the ONNX metadata at
export and checked when the model is loaded, so a change to the features cannot silently break a
shipped model (pure Python; imported by the geometry estimator, the feature extractor and the runner).

Bump ``FEATURES_VERSION`` whenever ``FeatureExtractor``'s layout changes (which parts, their order,
their scaling); a model exported under another version is refused at load with one line.
"""

from __future__ import annotations

import json
from typing import Mapping

FEATURES_VERSION = 1
METADATA_KEY = "input_contract"

# The geometry baseline's distances, in the order the network reads them (GeometryEstimator.features
# computes them by these names). Per eye side: eye aspect ratio, then inner, outer and mean brow
# height; then the inner-lip gap, the mouth width and each corner's lift above the lip midline.
GEOMETRY_FEATURES: tuple[str, ...] = (
    "earLeft", "browInnerLeft", "browOuterLeft", "browLeft",
    "earRight", "browInnerRight", "browOuterRight", "browRight",
    "gap", "width", "liftLeft", "liftRight",
)
N_LANDMARKS = 478
CROP_SIZE = 96                         # the tracker's default TrackerConfig.crop_size
EYE_PATCH = (24, 40)                   # (height, width) of one eye patch, pixels
# crop-frame landmarks, frontal landmarks (x, y, z each), geometry distances, PnP rotation (6D)
FEATURE_DIM = N_LANDMARKS * 3 * 2 + len(GEOMETRY_FEATURES) + 6


class ModelContractError(ValueError):
    """A model's stored input contract does not match what this code feeds it."""


def input_contract() -> dict:
    """What this code feeds the network, as stored in a model's metadata."""
    return {"features_version": FEATURES_VERSION, "crop_size": CROP_SIZE, "eye_patch": list(EYE_PATCH),
            "feature_dim": FEATURE_DIM, "geometry_features": list(GEOMETRY_FEATURES)}


def check_contract(metadata: Mapping[str, str], model_name: str) -> dict:
    """The model's contract from its ONNX metadata; ``ModelContractError`` (one line naming the first
    difference and what to do) when it is missing or differs from ``input_contract()``."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise ModelContractError(f"{model_name} has no {METADATA_KEY} in its metadata (exported before the "
                                 f"contract existed); re-export it with python -m blendshape_model.export, "
                                 f"or use --estimator geometry")
    try:
        stored = json.loads(raw)
    except ValueError:
        raise ModelContractError(f"{model_name}: its {METADATA_KEY} metadata is not JSON; re-export it") from None
    for key, value in input_contract().items():
        theirs = stored.get(key)
        if theirs == value:
            continue
        if isinstance(value, list) and isinstance(theirs, list) and len(theirs) == len(value):
            i = next(i for i, (a, b) in enumerate(zip(theirs, value)) if a != b)   # name the first difference
            key, theirs, value = f"{key}[{i}]", theirs[i], value[i]
        raise ModelContractError(
            f"{model_name} was exported for {key} {theirs!r} but this avatar-bridge feeds {value!r}; "
            f"use a model exported by this version (python -m blendshape_model.export) or --estimator geometry")
    return stored
