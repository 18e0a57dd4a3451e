"""The one estimator interface every implementation (geometry baseline, neural model) follows."""

from __future__ import annotations

from typing import Protocol

from avatar_bridge.types import FaceObservation, FaceState


class Estimator(Protocol):
    """``FaceObservation -> FaceState``; ``reset()`` forgets any state carried between frames
    (the daemon calls it when the face is lost)."""

    name: str

    def estimate(self, observation: FaceObservation) -> FaceState: ...

    def reset(self) -> None: ...
