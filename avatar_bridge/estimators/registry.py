"""Every estimator by name: one list that ``run``, ``process``, ``bench``, ``doctor`` and their
``--help`` read, in the model registry's style (name -> factory, ``list_estimators()``,
``create_estimator(name)``). Adding an estimator is one ``EstimatorEntry`` here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from avatar_bridge.estimators.base import Estimator

log = logging.getLogger(__name__)

# What "auto" runs when the shipped model is installed: the better of the two on the held-out
# evaluation (docs/model_card.md has the numbers and the history); a model that falls behind the
# geometry baseline again should turn this off.
AUTO_PREFERS_NEURAL = True


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
    if not AUTO_PREFERS_NEURAL and model_path is None:
        log.info("estimator: geometry (the shipped neural model does not beat it yet; try --estimator neural)")
        return _geometry(None)
    try:
        return _neural(model_path)
    except EstimatorError as exc:
        # A stale model is worth a warning; no model at all (a slim install) only an info line.
        level = logging.WARNING if isinstance(exc.__cause__, ValueError) else logging.INFO
        log.log(level, "no neural model available (%s); using the geometry estimator", exc.__cause__ or exc)
        return _geometry(None)


_REGISTRY: dict[str, EstimatorEntry] = {e.name: e for e in (
    EstimatorEntry("auto", "the best shipped estimator: the neural model, which beats the geometry baseline "
                           "on the held-out evaluation in docs/model_card.md, else geometry", _auto),
    EstimatorEntry("neural", "the CNN+GRU on the face crop (ONNX)", _neural),
    EstimatorEntry("geometry", "landmark ratios and PnP, no model file", _geometry),
    EstimatorEntry("landmarks", "the small network on landmarks alone, distilled from MediaPipe's "
                                "blendshape model", _landmarks),
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
