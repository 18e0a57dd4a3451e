"""A performer's calibration profile: per-shape neutral offset, range, gain, curve, deadzone and clamp,
plus optional filter overrides per group; stored as TOML at ``<profile_dir>/<name>.toml``.

The directory is always passed in (``default_profile_dir()`` is what the CLI passes), so tests and
several users on one machine never share state by accident.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import tomli_w

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX

N_SHAPES = len(ARKIT_BLENDSHAPES)
FILTER_GROUPS = ("eyes", "gaze", "brows", "mouth", "head")
FILTER_KEYS = ("min_cutoff", "beta", "d_cutoff", "snap")
PROFILE_VERSION = 1

# A shape whose widest value is closer than this to its neutral was not really made during a
# range calibration; stretching such a span to 0..1 would only amplify noise, so it is skipped.
MIN_RANGE_SPAN = 0.1
# Floor on (max - offset) when normalising, for hand-edited profiles with max ~ offset.
_MIN_SPAN = 0.05
# Robust statistics: the neutral is the median (one blink or a bad frame in two seconds moves
# it not at all); the widest expression is a high percentile, not the maximum, for the same reason.
RANGE_PERCENTILE = 95.0

_DEFAULTS = {"offset": 0.0, "max": 1.0, "gain": 1.0, "gamma": 1.0, "deadzone": 0.0}


class ProfileError(ValueError):
    """A profile that cannot be found, read or used; the text names the file and what to do."""


def default_profile_dir() -> Path:
    """Where profiles live for this user, e.g. ~/.config/avatar-bridge/profiles on Linux."""
    return Path(platformdirs.user_config_dir("avatar-bridge")) / "profiles"


def profile_path(name: str, profile_dir: Path) -> Path:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ProfileError(f"profile name {name!r} must be a plain file name such as 'alice'")
    return Path(profile_dir) / f"{name}.toml"


def _full(value: float) -> np.ndarray:
    return np.full(N_SHAPES, value, np.float32)


@dataclass(frozen=True, eq=False)
class Profile:
    """Per-shape calibration, arrays (52,) float32 in ARKit order; the identity when all defaults.

    Applied to a raw coefficient x: y = clip((x - offset) / (max - offset), 0, 1); values under
    ``deadzone`` become 0 and the rest are stretched back to reach 1; y = gain * y ** gamma;
    finally clamped to [clamp_lo, clamp_hi].
    """

    name: str = "default"
    offset: np.ndarray = field(default_factory=lambda: _full(0.0))     # raw value of the neutral face
    max: np.ndarray = field(default_factory=lambda: _full(1.0))        # raw value of the widest expression
    gain: np.ndarray = field(default_factory=lambda: _full(1.0))
    gamma: np.ndarray = field(default_factory=lambda: _full(1.0))      # < 1 makes small motions bigger
    deadzone: np.ndarray = field(default_factory=lambda: _full(0.0))   # in normalised units, 0..1
    clamp_lo: np.ndarray = field(default_factory=lambda: _full(0.0))
    clamp_hi: np.ndarray = field(default_factory=lambda: _full(1.0))
    # {"mouth": {"min_cutoff": 1.5, "beta": 3.0}, ...}; keys from FILTER_GROUPS / FILTER_KEYS.
    filter: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def has_neutral(self) -> bool:
        """Whether a neutral face was recorded (any offset set); auto-neutral stands down then."""
        return bool(np.any(self.offset != 0.0))

    def apply(self, blendshapes: np.ndarray) -> np.ndarray:
        """Map raw estimator coefficients (52,) to this performer's calibrated ones."""
        x = np.asarray(blendshapes, np.float32)
        span = np.maximum(self.max - self.offset, _MIN_SPAN)
        y = np.clip((x - self.offset) / span, 0.0, 1.0)
        dz = np.clip(self.deadzone, 0.0, 0.99)
        y = np.where(y <= dz, 0.0, (y - dz) / (1.0 - dz))
        y = self.gain * np.power(y, self.gamma)
        return np.clip(y, self.clamp_lo, self.clamp_hi).astype(np.float32)

    def with_neutral(self, samples: np.ndarray) -> "Profile":
        """A copy whose offsets are the per-shape median of raw neutral-face samples (frames, 52)."""
        samples = np.asarray(samples, np.float32).reshape(-1, N_SHAPES)
        offset = np.median(samples, axis=0).astype(np.float32)
        # A recorded max that the new neutral has caught up with is no longer a range: reset it.
        stale = self.max - offset < MIN_RANGE_SPAN
        new_max = np.where(stale, np.float32(1.0), self.max).astype(np.float32)
        return replace(self, offset=offset, max=new_max)

    def with_ranges(self, samples: np.ndarray) -> "Profile":
        """A copy whose ``max`` is the 95th percentile of raw widest-expression samples (frames, 52),
        for each shape that was actually made (rose at least MIN_RANGE_SPAN above its neutral)."""
        samples = np.asarray(samples, np.float32).reshape(-1, N_SHAPES)
        top = np.percentile(samples, RANGE_PERCENTILE, axis=0).astype(np.float32)
        made = top - self.offset >= MIN_RANGE_SPAN
        return replace(self, max=np.where(made, top, self.max).astype(np.float32))

    def shapes_ranged(self) -> list[str]:
        return [n for n, m in zip(ARKIT_BLENDSHAPES, self.max) if m < 1.0]

    # --- TOML -----------------------------------------------------------------------------------

    def to_toml_dict(self) -> dict[str, Any]:
        """Only what differs from the identity is written, so a profile stays readable by hand."""
        shapes: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(ARKIT_BLENDSHAPES):
            entry: dict[str, Any] = {}
            for key, default in _DEFAULTS.items():
                v = round(float(getattr(self, key)[i]), 5)
                if v != default:
                    entry[key] = v
            lo, hi = round(float(self.clamp_lo[i]), 5), round(float(self.clamp_hi[i]), 5)
            if (lo, hi) != (0.0, 1.0):
                entry["clamp"] = [lo, hi]
            if entry:
                shapes[name] = entry
        out: dict[str, Any] = {"version": PROFILE_VERSION, "name": self.name}
        if self.filter:
            out["filter"] = {g: dict(p) for g, p in self.filter.items()}
        if shapes:
            out["shapes"] = shapes
        return out

    @staticmethod
    def from_toml_dict(data: dict[str, Any], name: str, where: str = "profile") -> "Profile":
        arrays = {k: _full(v) for k, v in _DEFAULTS.items()}
        lo, hi = _full(0.0), _full(1.0)
        shapes = data.get("shapes", {})
        if not isinstance(shapes, dict):
            raise ProfileError(f"{where}: [shapes] must be a table of per-shape tables")
        for shape, entry in shapes.items():
            if shape not in INDEX:
                raise ProfileError(f"{where}: unknown blendshape {shape!r} in [shapes]; names are ARKit's, "
                                   f"e.g. 'jawOpen', 'eyeBlinkLeft'")
            if not isinstance(entry, dict):
                raise ProfileError(f"{where}: [shapes.{shape}] must be a table")
            i = INDEX[shape]
            for key, value in entry.items():
                if key == "clamp":
                    if (not isinstance(value, list) or len(value) != 2
                            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
                        raise ProfileError(f"{where}: shapes.{shape}.clamp must be [lo, hi] with lo <= hi")
                    lo[i], hi[i] = value
                elif key in arrays:
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        raise ProfileError(f"{where}: shapes.{shape}.{key} must be a number, got {value!r}")
                    arrays[key][i] = value
                else:
                    raise ProfileError(f"{where}: unknown key {key!r} in [shapes.{shape}]; known: "
                                       f"{', '.join([*_DEFAULTS, 'clamp'])}")
            if arrays["gamma"][i] <= 0:
                raise ProfileError(f"{where}: shapes.{shape}.gamma must be > 0")
            if not 0.0 <= arrays["deadzone"][i] < 1.0:
                raise ProfileError(f"{where}: shapes.{shape}.deadzone must be in [0, 1)")
        filt = data.get("filter", {})
        if not isinstance(filt, dict):
            raise ProfileError(f"{where}: [filter] must be a table of groups")
        for group, params in filt.items():
            if group not in FILTER_GROUPS or not isinstance(params, dict):
                raise ProfileError(f"{where}: unknown filter group {group!r}; groups: {', '.join(FILTER_GROUPS)}")
            for key, value in params.items():
                if key not in FILTER_KEYS or not isinstance(value, (int, float)) or value < 0:
                    raise ProfileError(f"{where}: filter.{group}.{key} must be one of {', '.join(FILTER_KEYS)} "
                                       f"with a number >= 0")
        return Profile(name=str(data.get("name", name)), clamp_lo=lo, clamp_hi=hi,
                       filter={g: {k: float(v) for k, v in p.items()} for g, p in filt.items()}, **arrays)


def save_profile(profile: Profile, profile_dir: Path) -> Path:
    """Write ``profile`` to ``<profile_dir>/<name>.toml`` (atomically) and return the path."""
    path = profile_path(profile.name, profile_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_bytes(tomli_w.dumps(profile.to_toml_dict()).encode("utf-8"))
    tmp.replace(path)
    return path


def load_profile(name: str, profile_dir: Path) -> Profile:
    """Read ``<profile_dir>/<name>.toml``; ProfileError says where it looked and how to make one."""
    path = profile_path(name, profile_dir)
    if not path.is_file():
        raise ProfileError(f"no profile {name!r}: {path} does not exist. Create it with "
                           f"`avatar-bridge calibrate --profile {name}` while `avatar-bridge run` is running")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ProfileError(f"profile {path} is not valid TOML: {exc}. Fix that line, or delete the file and "
                           f"re-run `avatar-bridge calibrate --profile {name}`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    return Profile.from_toml_dict(data, name, where=str(path))


def load_or_default(name: str | None, profile_dir: Path) -> Profile:
    """The profile to start with: ``name`` if given (it must exist), else 'default' if saved, else identity."""
    if name is not None:
        return load_profile(name, profile_dir)
    if profile_path("default", profile_dir).is_file():
        return load_profile("default", profile_dir)
    return Profile(name="default")
