"""Tracker -> estimator -> signal chain for one frame at a time, with per-stage timings.

Used by the daemon (live), ``process`` (offline) and ``bench``; it owns no sockets or threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from avatar_bridge.estimators.base import Estimator
from avatar_bridge.estimators.registry import create_estimator
from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
from avatar_bridge.types import FaceObservation, FaceState, Frame


class Stage(Protocol):
    def process(self, state: FaceState) -> FaceState: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    estimator: str = "auto"              # a name in estimators/registry.py
    model_path: str | None = None        # an .onnx to use instead of the shipped one
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


def build_estimator(config: PipelineConfig) -> Estimator:
    """The estimator the config names (estimators/registry.py); ``auto`` falls back to geometry with a log line."""
    return create_estimator(config.estimator, config.model_path)


@dataclass
class Pipeline:
    """One frame in, one FaceState out (``face_present=False`` when no face was found)."""

    tracker: FaceTracker
    estimator: Estimator
    chain: Stage | None = None
    last_observation: FaceObservation | None = None    # of the last frame processed (the camera view)

    @classmethod
    def create(cls, config: PipelineConfig, chain: Stage | None = None) -> "Pipeline":
        return cls(FaceTracker(config.tracker), build_estimator(config), chain)

    def process(self, frame: Frame) -> tuple[FaceState, dict[str, float]]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        observation = self.last_observation = self.tracker.track(frame)
        t1 = time.perf_counter()
        timings["tracking"] = (t1 - t0) * 1000
        if observation is None:
            self.estimator.reset()  # recurrent state must not carry across a lost face
            state = FaceState.neutral(face_present=False, t_capture=frame.t_capture, frame_index=frame.index)
        else:
            state = self.estimator.estimate(observation)
        t2 = time.perf_counter()
        timings["estimator"] = (t2 - t1) * 1000
        if self.chain is not None:
            state = self.chain.process(state)
            timings["signal"] = (time.perf_counter() - t2) * 1000
        return state, timings

    def close(self) -> None:
        self.tracker.close()
