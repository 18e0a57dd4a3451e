"""Every estimator by name: one list that ``run``, ``process``, ``bench``, ``doctor`` and their
``--help`` read, in the model registry's style (name -> factory, ``list_estimators()``,
``create_estimator(name)``). Adding an estimator is one ``EstimatorEntry`` here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from avatar_bridge.estimators.base import Estimator

log = logging.getLogger(__name__)

# What "auto" runs: the first of these that can be built, in the order of the real-face evaluation
# (`python -m training.evaluate_real`; numbers in docs/model_card.md): the distilled landmark network
# catches the most real events, the geometry baseline the next. The CNN+GRU, best on renders, is
# last on real faces and runs only when asked for (or when --model names a CNN+GRU file).
AUTO_ORDER = ("landmarks", "geometry")


class EstimatorError(RuntimeError):
    """The requested estimator cannot be built (e.g. no model file)."""


@dataclass(frozen=True)
class EstimatorEntry:
    """One estimator: its name, the words ``--help`` shows, and how to build it from an optional
    model path (the factory imports its own module, so an unused estimator costs nothing)."""

    name: str
    summary: str
    build: Callable[[str | None], Estimator]


def _geometry(model_path: str | None) -> Estimator:
    from avatar_bridge.estimators.geometry import GeometryEstimator
    return GeometryEstimator()


def _neural(model_path: str | None) -> Estimator:
    try:
        from avatar_bridge.estimators.neural import NeuralEstimator
        return NeuralEstimator.from_path(model_path)
    except ValueError as exc:   # a model whose input contract differs: its own line says what to do
        raise EstimatorError(str(exc)) from exc
    except (ImportError, FileNotFoundError) as exc:
        raise EstimatorError(f"the neural estimator is unavailable: {exc}. Use --estimator geometry") from exc


def _landmarks(model_path: str | None) -> Estimator:
    from avatar_bridge.estimators.landmark_net import LandmarkNetEstimator
    try:
        return LandmarkNetEstimator.from_path(model_path)
    except FileNotFoundError as exc:
        raise EstimatorError(f"the landmarks estimator is unavailable: {exc}. Use --estimator geometry") from exc
    except ValueError as exc:   # not a landmark model this code can feed; the text says what it expected
        raise EstimatorError(str(exc)) from exc


def _auto(model_path: str | None) -> Estimator:
    # --model names a CNN+GRU file (a landmark model goes with --estimator landmarks); without one,
    # the first of AUTO_ORDER that can be built. Geometry needs no file, so it always can.
    candidates = [("neural", model_path), ("geometry", None)] if model_path else [(n, None) for n in AUTO_ORDER]
    for name, path in candidates:
        try:
            return _REGISTRY[name].build(path)
        except EstimatorError as exc:
            # A stale model is worth a warning; no model at all (a slim install) only an info line.
            level = logging.WARNING if isinstance(exc.__cause__, ValueError) else logging.INFO
            log.log(level, "auto: %s is unavailable (%s); trying the next", name, exc.__cause__ or exc)
    raise EstimatorError("no estimator could be built")   # unreachable: geometry needs no file


_REGISTRY: dict[str, EstimatorEntry] = {e.name: e for e in (
    EstimatorEntry("auto", "the best installed estimator on real faces: landmarks, else geometry "
                           "(docs/model_card.md)", _auto),
    EstimatorEntry("neural", "the CNN+GRU on the face crop (ONNX; best on renders, behind on real faces)", _neural),
    EstimatorEntry("geometry", "landmark ratios and PnP, no model file", _geometry),
    EstimatorEntry("landmarks", "the small network on landmarks, distilled from MediaPipe's blendshape "
                                "model, with geometry's blinks and jaw", _landmarks),
)}


def list_estimators() -> list[str]:
    """The estimator names, in the order ``--help`` shows them."""
    return list(_REGISTRY)


def estimator_help() -> str:
    """The ``--estimator`` option's help: every name with its one-line summary."""
    return "; ".join(f"{e.name}: {e.summary}" for e in _REGISTRY.values()) + "."


def create_estimator(name: str, model_path: str | None = None) -> Estimator:
    """Build an estimator by name; ``model_path`` replaces the shipped model where one is used."""
    if name not in _REGISTRY:
        raise EstimatorError(f"unknown estimator {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name].build(model_path)
