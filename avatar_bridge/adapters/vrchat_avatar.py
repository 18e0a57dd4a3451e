"""Which VRChat avatar is worn and which face parameters it has: OSCQuery's ``/avatar`` first, else
VRChat's avatar OSC config JSON, matched the way VRCFaceTracking matches (address ends "v2/<Name>").

The OSCQuery protocol itself (mDNS + HTTP) is in oscquery.py; the encoder that uses the addresses
found here is in vrchat.py.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from avatar_bridge.adapters import oscquery

log = logging.getLogger("avatar_bridge.adapters.vrchat")

AVATAR_PARAMS = "/avatar/parameters/"


def load_avatar_config(path: str | os.PathLike) -> dict[str, str]:
    """{input address: type} from a VRChat avatar OSC config JSON (parameters[].input)."""
    with open(path, encoding="utf-8-sig") as fh:
        doc = json.load(fh)
    out = {}
    for p in doc.get("parameters", []):
        inp = p.get("input") if isinstance(p, dict) else None
        if isinstance(inp, dict) and isinstance(inp.get("address"), str):
            out[inp["address"]] = str(inp.get("type", ""))
    return out


def resolve_addresses(names: list[str], available: dict[str, str] | None, prefix: str) -> dict[str, str]:
    """{v2 name: OSC address}. Unknown avatar: everything under ``prefix``; known: only the float
    parameters whose address ends with "v2/<name>" (VRCFT's rule), in its spelling."""
    if available is None:
        return {n: f"{AVATAR_PARAMS}{prefix}{n}" for n in names}
    out = {}
    for n in names:
        suffix = "v2/" + n
        for address, kind in available.items():
            if address.startswith(AVATAR_PARAMS) and address.endswith(suffix) and kind.lower() in ("float", "f"):
                out[n] = address
                break
    return out


def default_avatar_config_dir() -> Path | None:
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]).parent / "LocalLow" / "VRChat" / "VRChat" / "OSC"
    return None


def find_avatar_config(avatar_id: str, config_dir: str | None) -> Path | None:
    """VRChat's ``usr_*/Avatars/<id>.json`` under ``config_dir`` (default: VRChat's OSC folder)."""
    root = Path(config_dir) if config_dir else default_avatar_config_dir()
    if root is None or not root.is_dir():
        return None
    for candidate in [root / f"{avatar_id}.json", *root.glob(f"*/Avatars/{avatar_id}.json")]:
        if candidate.is_file():
            return candidate
    return None


def avatar_parameters(service: oscquery.OscQueryService | None, avatar_id: str | None,
                      config_dir: str | None) -> tuple[str | None, dict[str, str] | None, str]:
    """(avatar id, {address: type} or None when unknown, where that came from) for the worn avatar."""
    available, source = None, "none found; sending every parameter"
    if service is not None:
        try:
            found_id, params = oscquery.fetch_avatar(service)
            avatar_id = avatar_id or found_id
            if params:
                available, source = params, "OSCQuery"
        except (OSError, ValueError) as exc:
            log.debug("vrchat: OSCQuery /avatar failed: %s", exc)
    if available is None and avatar_id:
        path = find_avatar_config(avatar_id, config_dir)
        if path is not None:
            try:
                available, source = load_avatar_config(path), str(path)
            except (OSError, ValueError) as exc:
                log.warning("vrchat: cannot read avatar config %s: %s", path, exc)
    return avatar_id, available, source


def avatar_changes(data: bytes):
    """The avatar ids of every ``/avatar/change`` message in an OSC packet from VRChat."""
    for address, args in osc_messages(data):
        if address == "/avatar/change" and args and isinstance(args[0], str):
            yield args[0]


def osc_messages(data: bytes):
    """(address, params) of every message in an OSC packet; malformed packets yield nothing."""
    try:
        if OscBundle.dgram_is_bundle(data):
            for item in OscBundle(data):
                if isinstance(item, OscMessage):
                    yield item.address, item.params
                elif isinstance(item, OscBundle):
                    yield from osc_messages(item.dgram)
        else:
            msg = OscMessage(data)
            yield msg.address, msg.params
    except Exception as exc:  # python-osc raises ParseError and others on garbage; log, don't die
        log.debug("vrchat: ignored a malformed OSC packet (%s)", exc)
