"""The one estimator interface every implementation (geometry baseline, neural model) follows."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from avatar_bridge.types import FaceObservation, FaceState


class Estimator(Protocol):
    """``FaceObservation -> FaceState``; ``reset()`` forgets any state carried between frames
    (the daemon calls it when the face is lost)."""

    name: str

    def estimate(self, observation: FaceObservation) -> FaceState: ...

    def reset(self) -> None: ...


def cpu_session(path: Path, threads: int):
    """An onnxruntime CPU session for a small per-frame model: ``threads`` intra-op threads (the
    tracker wants the other core) and no inter-op pool."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
