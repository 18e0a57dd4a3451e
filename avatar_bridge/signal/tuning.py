"""Changing the signal chain while it runs: the daemon's ``signal.get`` / ``signal.set`` control
commands (mirror, smoothing on/off, One Euro parameters per filter group), e.g. from the preview page.

Served from the frame loop's thread like every control command, so the chain (not thread-safe) is
only ever touched between frames. Changes last until the daemon stops; nothing is written to disk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Callable

from avatar_bridge.signal.profile import FILTER_GROUPS, FILTER_KEYS

if TYPE_CHECKING:
    from avatar_bridge.signal.chain import SignalChain

# Accepted ranges per One Euro parameter: wide enough for any tuning, narrow enough to catch a typo.
FILTER_LIMITS = {"min_cutoff": (0.01, 30.0), "beta": (0.0, 1000.0), "d_cutoff": (0.01, 30.0), "snap": (0.0, 10.0)}
SWITCHES = ("mirror", "smoothing")


class TuningError(ValueError):
    """A ``signal.set`` request that cannot be applied; nothing was changed. The text says what is accepted."""


def signal_settings(chain: SignalChain) -> dict[str, Any]:
    """The switches and the filter parameters in force (the config's, overridden by the profile's)."""
    cfg = chain.config
    return {"mirror": cfg.mirror, "smoothing": cfg.smoothing, "calibration": cfg.calibration,
            "link_blinks": cfg.link_blinks, "filter": {g: asdict(chain.filter_params(g)) for g in FILTER_GROUPS}}


def _checked_filter(change: Any) -> dict[str, dict[str, float]]:
    if not isinstance(change, dict):
        raise TuningError("'filter' must be a map like {'mouth': {'min_cutoff': 1.0}}")
    out: dict[str, dict[str, float]] = {}
    for group, values in change.items():
        if group not in FILTER_GROUPS:
            raise TuningError(f"unknown filter group {group!r}; use one of {', '.join(FILTER_GROUPS)}")
        if not isinstance(values, dict):
            raise TuningError(f"filter.{group} must be a map like {{'min_cutoff': 1.0, 'beta': 3.0}}")
        for key, value in values.items():
            if key not in FILTER_KEYS:
                raise TuningError(f"unknown filter parameter {key!r}; use {', '.join(FILTER_KEYS)}")
            lo, hi = FILTER_LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise TuningError(f"filter.{group}.{key} = {value!r} is out of range; use a number from {lo:g} to {hi:g}")
            out.setdefault(group, {})[key] = float(value)
    return out


def apply_change(chain: SignalChain, req: dict[str, Any]) -> None:
    """Check the whole request, then apply it from the next frame on (filter state carried over)."""
    unknown = set(req) - {"cmd", "filter", *SWITCHES}
    if unknown:
        raise TuningError(f"signal.set takes {', '.join(SWITCHES)} and filter, not {', '.join(sorted(unknown))}")
    switches = {}
    for key in SWITCHES:
        if key in req:
            if not isinstance(req[key], bool):
                raise TuningError(f"{key} must be true or false, not {req[key]!r}")
            switches[key] = req[key]
    change = _checked_filter(req.get("filter", {}))
    config = replace(chain.config, **switches,
                     **{g: replace(chain.config.group(g), **vals) for g, vals in change.items()})
    # A value set here must be the one in force, so the profile's override of that key is dropped
    # (in memory only; the saved profile is untouched).
    profile = chain.profile
    overrides = {g: {k: v for k, v in vals.items() if k not in change.get(g, {})} for g, vals in profile.filter.items()}
    chain.config = config
    chain.set_profile(replace(profile, filter={g: v for g, v in overrides.items() if v}))


def tuning_handlers(chain: SignalChain) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """Control-socket handlers ``signal.get`` and ``signal.set`` (which answers with the settings in force)."""

    def set_signal(req: dict[str, Any]) -> dict[str, Any]:
        apply_change(chain, req)
        return signal_settings(chain)

    return {"signal.get": lambda req: signal_settings(chain), "signal.set": set_signal}
