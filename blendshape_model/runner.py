"""Runs the exported blendshape network with onnxruntime, carrying the GRU state between frames.

numpy + onnxruntime only (the runtime path never imports torch). Uses the CUDA execution provider
when onnxruntime-gpu and a GPU are present, the CPU one otherwise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from blendshape_model.contract import ModelContractError, check_contract

log = logging.getLogger(__name__)
_logged_providers: set[tuple[str, ...]] = set()


@dataclass(frozen=True)
class RunnerConfig:
    threads: int = 1          # intra-op threads: one keeps latency flat beside the tracker's threads
    use_gpu: bool = True      # take CUDAExecutionProvider when onnxruntime offers it


@dataclass(frozen=True)
class ModelOutput:
    """One frame's (or a sequence's, with a leading T axis) raw network outputs."""

    blendshapes: np.ndarray   # (..., 52) in [0, 1], ARKit order
    gaze: np.ndarray          # (..., 4) radians: left (yaw, pitch), right (yaw, pitch)
    pose_delta: np.ndarray    # (..., 3) rotation vector (radians), applied to the PnP rotation


def choose_providers(use_gpu: bool = True) -> list[str]:
    available = ort.get_available_providers()
    if use_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class BlendshapeRunner:
    """``step(crop, eyes, features)`` runs one frame and keeps the recurrent state; ``reset()`` clears it
    (call it when the face is lost). ``run_sequence`` runs T frames in one call."""

    def __init__(self, path: str | Path, config: RunnerConfig = RunnerConfig()) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"blendshape model not found at {path}; train and export one "
                                    "(see docs/model_card.md) or use --estimator geometry")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers(config.use_gpu)
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        used = tuple(self.session.get_providers())
        if used not in _logged_providers:
            _logged_providers.add(used)
            log.info("blendshape model %s on %s", path.name, ", ".join(used))
        self.path = path
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract = check_contract(meta, str(path))
        inputs = {i.name: i for i in self.session.get_inputs()}
        if inputs["features"].shape[-1] != self.contract["feature_dim"]:   # metadata edited by hand?
            raise ModelContractError(f"{path}: its graph reads {inputs['features'].shape[-1]} features but its "
                                     f"metadata says {self.contract['feature_dim']}; re-export it")
        self.model_config = json.loads(meta.get("model_config", "{}"))
        self.hidden = int(inputs["h"].shape[2])
        self._h: np.ndarray | None = None

    def reset(self) -> None:
        self._h = None

    def _state(self, batch: int) -> np.ndarray:
        if self._h is None or self._h.shape[1] != batch:
            return np.zeros((1, batch, self.hidden), np.float32)
        return self._h

    def _run(self, crops: np.ndarray, eyes: np.ndarray, features: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
        """All inputs (B, T, ...); returns [blendshapes, gaze, pose_delta, h_next]."""
        return self.session.run(None, {
            "crop": np.ascontiguousarray(crops, np.uint8), "eyes": np.ascontiguousarray(eyes, np.uint8),
            "features": np.ascontiguousarray(features, np.float32), "h": h})

    def run_sequence(self, crops: np.ndarray, eyes: np.ndarray, features: np.ndarray, h: np.ndarray | None = None
                     ) -> tuple[ModelOutput, np.ndarray]:
        """crops (T, S, S, 3) uint8, eyes (T, 2, EH, EW, 3) uint8, features (T, F) -> outputs with a
        T axis, and the final state. Does not touch the carried state."""
        h0 = np.zeros((1, 1, self.hidden), np.float32) if h is None else h
        bs, gaze, pose, h1 = self._run(crops[None], eyes[None], features[None], h0)
        return ModelOutput(bs[0], gaze[0], pose[0]), h1

    def step(self, crop: np.ndarray, eyes: np.ndarray, features: np.ndarray) -> ModelOutput:
        """One frame: crop (S, S, 3) uint8, eyes (2, EH, EW, 3) uint8, features (F,) float32.

        With a leading batch axis on all three, B streams advance together (one state each),
        e.g. a frame and its mirror image; the outputs then have the batch axis too.
        """
        single = crop.ndim == 3
        if single:
            crop, eyes, features = crop[None], eyes[None], features[None]
        bs, gaze, pose, self._h = self._run(crop[:, None], eyes[:, None], features[:, None], self._state(len(crop)))
        if single:
            return ModelOutput(bs[0, 0], gaze[0, 0], pose[0, 0])
        return ModelOutput(bs[:, 0], gaze[:, 0], pose[:, 0])
