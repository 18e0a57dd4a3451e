"""Tracker -> estimator -> signal chain for one frame at a time, with per-stage timings.

Used by the daemon (live), ``process`` (offline) and ``bench``; it owns no sockets or threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from avatar_bridge.estimators.base import Estimator
from avatar_bridge.estimators.registry import EstimatorError, create_estimator
from avatar_bridge.regions import neutralise_untracked
from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
from avatar_bridge.types import FaceObservation, FaceState, Frame, LowerFaceObservation


class Stage(Protocol):
    def process(self, state: FaceState) -> FaceState: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    estimator: str = "auto"              # a name in estimators/registry.py
    model_path: str | None = None        # an .onnx to use instead of the shipped one
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    # Headset mode: the upper face is covered; the lower-face network reads the mouth and the face
    # state marks eyes, gaze and brows untracked (docs/headset.md). ``estimator`` is then ignored.
    headset: bool = False
    roi: tuple[float, float, float, float] | None = None   # x, y, w, h pixels, used when no face mesh fits
    mouth_camera: bool = False           # the whole frame is the lower face from below (implies headset)
    lower_face_model: str | None = None  # an .onnx instead of the shipped lower_face.onnx

    def __post_init__(self) -> None:
        if self.roi is not None:
            roi = tuple(float(v) for v in self.roi)
            if len(roi) != 4 or roi[2] <= 0 or roi[3] <= 0:
                raise ValueError(f"roi must be x, y, w, h in pixels with w, h > 0, got {self.roi!r}")
            object.__setattr__(self, "roi", roi)

    @property
    def headset_mode(self) -> bool:
        return self.headset or self.mouth_camera


def build_estimator(config: PipelineConfig) -> Estimator:
    """The estimator the config names (estimators/registry.py); ``auto`` falls back to geometry with a log line."""
    return create_estimator(config.estimator, config.model_path)


@dataclass
class Pipeline:
    """One frame in, one FaceState out (``face_present=False`` when no face was found)."""

    tracker: FaceTracker                 # or tracking.headset.HeadsetTracker in headset mode
    estimator: Estimator
    chain: Stage | None = None
    last_observation: FaceObservation | LowerFaceObservation | None = None   # of the last frame (the camera view)

    untracked: frozenset[str] = frozenset()             # what a no-face frame marks untracked

    @classmethod
    def create(cls, config: PipelineConfig, chain: Stage | None = None) -> "Pipeline":
        if config.headset_mode:
            return cls.create_headset(config, chain)
        return cls(FaceTracker(config.tracker), build_estimator(config), chain)

    @classmethod
    def create_headset(cls, config: PipelineConfig, chain: Stage | None = None) -> "Pipeline":
        """Headset mode: HeadsetTracker (mesh, held box, ROI or mouth camera) -> LowerFaceEstimator."""
        from avatar_bridge.estimators.lower_face import NO_MESH_UNTRACKED, LowerFaceEstimator, LowerFaceModelError
        from avatar_bridge.tracking.headset import HeadsetTracker, HeadsetTrackerConfig

        try:
            estimator = LowerFaceEstimator.from_path(config.lower_face_model)
        except (FileNotFoundError, LowerFaceModelError) as exc:
            raise EstimatorError(f"headset mode needs the lower-face model: {exc}") from exc
        tracker = HeadsetTracker(HeadsetTrackerConfig(roi=config.roi, mouth_camera=config.mouth_camera))
        return cls(tracker, estimator, chain, untracked=NO_MESH_UNTRACKED)

    def process(self, frame: Frame) -> tuple[FaceState, dict[str, float]]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        observation = self.last_observation = self.tracker.track(frame)
        t1 = time.perf_counter()
        timings["tracking"] = (t1 - t0) * 1000
        if observation is None:
            self.estimator.reset()  # recurrent state must not carry across a lost face
            state = FaceState.neutral(face_present=False, t_capture=frame.t_capture, frame_index=frame.index,
                                      untracked=self.untracked)
        else:
            state = self.estimator.estimate(observation)
        t2 = time.perf_counter()
        timings["estimator"] = (t2 - t1) * 1000
        if self.chain is not None:
            state = self.chain.process(state)
            timings["signal"] = (time.perf_counter() - t2) * 1000
        if state.untracked:
            # Calibration offsets or a held face must not bring back what nobody saw.
            state = neutralise_untracked(state)
        return state, timings

    def close(self) -> None:
        self.tracker.close()
