"""Calibration: collecting a performer's raw estimator output into a profile (neutral offsets or
ranges), and the daemon's control-socket handlers for it (``calibrate``, ``calibrate.status``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from avatar_bridge.signal.profile import Profile, profile_path, save_profile
from avatar_bridge.types import FaceState

if TYPE_CHECKING:  # the chain owns a Calibrator; only the handlers need the chain's type
    from avatar_bridge.signal.chain import SignalChain

log = logging.getLogger(__name__)

CalibrationKind = Literal["neutral", "range"]


class CalibrationError(ValueError):
    """A calibration request that cannot be served; the text says what to do."""


@dataclass
class _Collection:
    kind: str
    seconds: float
    on_done: Callable[[Profile], None] | None
    t_start: float | None = None
    t_last: float | None = None
    samples: list[np.ndarray] = field(default_factory=list)


class Calibrator:
    """Collects the raw estimator output of the present frames of the next ``seconds`` and turns
    it into a profile: neutral offsets (median) or ranges (95th percentile). The signal chain
    feeds it every frame (``observe``) and applies the profile it returns."""

    # At least this many frames must have had a face for a calibration to count.
    MIN_FRAMES = 10

    def __init__(self) -> None:
        self._run: _Collection | None = None
        self._result: dict = {"state": "idle"}
        self._on_done: Callable[[Profile], None] | None = None

    def begin(self, kind: CalibrationKind, seconds: float = 2.0,
              on_done: Callable[[Profile], None] | None = None) -> dict:
        """Start collecting; ``on_done`` gets the new profile (e.g. to save it). Returns ``status()``."""
        if kind not in ("neutral", "range"):
            raise CalibrationError(f"unknown calibration kind {kind!r}; use 'neutral' or 'range'")
        if not 0.2 <= float(seconds) <= 60.0:
            raise CalibrationError(f"calibration time {seconds} s is out of range; use 0.2 to 60 s")
        if self._run is not None:
            raise CalibrationError("a calibration is already running; wait for it to finish")
        self._run = _Collection(kind=kind, seconds=float(seconds), on_done=on_done)
        self._result = {}
        return self.status()

    def cancel(self, why: str) -> None:
        if self._run is not None:
            self._run = None
            self._result = {"state": "idle", "message": why}

    def status(self) -> dict:
        """{"state": "idle" | "collecting" | "done" | "failed", "kind", "frames", "seconds_left", ...}."""
        c = self._run
        if c is None:
            return dict(self._result)
        elapsed = 0.0 if c.t_start is None or c.t_last is None else c.t_last - c.t_start
        return {"state": "collecting", "kind": c.kind, "frames": len(c.samples),
                "seconds": c.seconds, "seconds_left": round(max(0.0, c.seconds - elapsed), 3)}

    def observe(self, state: FaceState, profile: Profile) -> Profile | None:
        """One raw frame; returns the new profile (built on ``profile``) when collection ends well."""
        c = self._run
        if c is None:
            return None
        t = float(state.t_capture)
        if c.t_start is None:
            c.t_start = t
        c.t_last = t
        if state.face_present:
            c.samples.append(np.asarray(state.blendshapes, np.float32).copy())
        if t - c.t_start < c.seconds:
            return None
        self._run = None
        n = len(c.samples)
        self._result = {"kind": c.kind, "frames": n, "seconds": c.seconds, "seconds_left": 0.0}
        if n < self.MIN_FRAMES:
            self._result.update(state="failed", message=f"only {n} frames with a face in {c.seconds:g} s; face "
                                                        f"the camera in good light and run the calibration again")
            log.warning("calibration: %s", self._result["message"])
            return None
        samples = np.stack(c.samples)
        new = profile.with_neutral(samples) if c.kind == "neutral" else profile.with_ranges(samples)
        self._result["state"] = "done"
        if c.kind == "range":
            self._result["shapes_ranged"] = new.shapes_ranged()
        log.info("calibration (%s) done on %d frames", c.kind, n)
        self._on_done = c.on_done
        return new

    def finished(self, profile: Profile) -> None:
        """Called by the chain once the new profile is in force: runs ``on_done`` (a save)."""
        on_done, self._on_done = self._on_done, None
        if on_done is None:
            return
        try:
            on_done(profile)
        except Exception as exc:  # e.g. a read-only config dir: the frame loop must go on; the client is told
            log.exception("calibration: saving the profile failed")
            self._result.update(state="failed", message=f"calibrated, but saving the profile failed: {exc}")


DEFAULT_SECONDS = {"neutral": 2.0, "range": 8.0}


def calibration_handlers(chain: SignalChain, profile_dir: Path,
                         profile_name: str) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """Control-socket handlers for ``calibrate`` and ``calibrate.status``; register them on the
    daemon's ControlServer. The profile is saved to ``<profile_dir>/<name>.toml`` when collection
    ends (``name`` from the request, else ``profile_name``)."""
    saved: dict[str, Any] = {}

    def calibrate(req: dict[str, Any]) -> dict[str, Any]:
        kind = req.get("kind", "neutral")
        seconds = float(req.get("seconds") or DEFAULT_SECONDS.get(kind, 2.0))
        name = req.get("profile") or profile_name
        path = profile_path(str(name), profile_dir)  # a bad name fails now, not after the countdown
        saved.clear()

        def on_done(profile: Profile) -> None:
            profile = replace(profile, name=str(name))
            chain.set_profile(profile)
            saved["profile_path"] = str(save_profile(profile, profile_dir))
            log.info("calibration saved to %s", saved["profile_path"])

        status = chain.calibrator.begin(kind, seconds, on_done=on_done)
        return {**status, "profile": str(name), "will_save_to": str(path)}

    def calibrate_status(req: dict[str, Any]) -> dict[str, Any]:
        return {**chain.calibrator.status(), **saved}

    return {"calibrate": calibrate, "calibrate.status": calibrate_status}
