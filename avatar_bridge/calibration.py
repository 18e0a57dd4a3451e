"""The daemon's control-socket side of calibration: ``calibrate`` and ``calibrate.status``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from avatar_bridge.profile import Profile, profile_path, save_profile
from avatar_bridge.signal_chain import SignalChain

log = logging.getLogger(__name__)

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

        status = chain.begin_calibration(kind, seconds, on_done=on_done)
        return {**status, "profile": str(name), "will_save_to": str(path)}

    def calibrate_status(req: dict[str, Any]) -> dict[str, Any]:
        return {**chain.calibration_status(), **saved}

    return {"calibrate": calibrate, "calibrate.status": calibrate_status}
