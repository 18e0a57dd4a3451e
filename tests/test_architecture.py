"""docs/architecture.md is the map of the code: every module it names exists, and every package is on it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
TOKEN = re.compile(r"`([A-Za-z0-9_./-]+)`")


def _resolve(token: str, here: Path) -> Path:
    """A path as the doc writes it: from the repository root, from ``avatar_bridge/`` (``cli/common.py``),
    or, for a bare ``name.py``, in the folder the text was last talking about."""
    if "/" not in token:
        return here / token
    for base in (ROOT, ROOT / "avatar_bridge", here):
        if (base / token).exists():
            return base / token
    return ROOT / token


def named_paths() -> list[tuple[str, Path]]:
    out = []
    for paragraph in re.split(r"\n\s*\n|\n\|", DOC):
        here = ROOT / "avatar_bridge"
        for token in TOKEN.findall(paragraph):
            if not (token.endswith(".py") or token.endswith("/")):
                continue
            path = _resolve(token, here)
            out.append((token, path))
            here = path if token.endswith("/") else path.parent
    return out


def test_every_module_the_architecture_names_exists():
    paths = named_paths()
    assert len(paths) > 40, "the map names too few modules to be the map"
    missing = [token for token, path in paths if not path.exists()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_package_is_on_the_map():
    packages = sorted(p.parent.name for p in (ROOT / "avatar_bridge").glob("*/__init__.py"))
    assert {"tracking", "signal", "takes", "bus", "adapters", "runtime", "cli", "estimators"} <= set(packages)
    absent = [name for name in packages if f"{name}/" not in DOC]
    assert not absent, f"packages missing from docs/architecture.md: {absent}"
    top = sorted(p.name for p in (ROOT / "avatar_bridge").glob("*.py") if not p.name.startswith("__"))
    absent = [name for name in top if name not in DOC]
    assert not absent, f"top-level modules missing from docs/architecture.md: {absent}"
