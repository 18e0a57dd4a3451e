"""Find VRChat's OSC ports with OSCQuery (mDNS + HTTP), as VRChat and VRCFaceTracking do.

VRChat advertises ``_oscjson._tcp.local.`` under an instance name starting ``VRChat-Client-``.
``GET http://host:port/?HOST_INFO`` gives ``OSC_IP``/``OSC_PORT`` (where VRChat listens for OSC) and
``GET /avatar`` the current avatar: ``CONTENTS.change.VALUE[0]`` is its id and ``CONTENTS.parameters``
the parameter tree (nodes with ``FULL_PATH``, ``TYPE``, ``ACCESS``; names with "/" nest).
Discovery never raises: no zeroconf, no multicast, or no VRChat all give ``None``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SERVICE_TYPE = "_oscjson._tcp.local."
VRCHAT_PREFIX = "VRChat-Client-"


@dataclass(frozen=True)
class OscQueryService:
    """A VRChat client found on the network: its OSCQuery HTTP endpoint and its OSC input."""

    name: str
    http_host: str
    http_port: int
    osc_host: str
    osc_port: int


def http_json(host: str, port: int, path: str, timeout_s: float = 1.0) -> Any:
    url = f"http://{host}:{port}{path}"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # loopback/LAN only, no redirects expected
        return json.loads(resp.read().decode("utf-8"))


def parse_parameter_tree(node: dict[str, Any]) -> dict[str, str]:
    """Flatten an OSCQuery node tree into {full OSC address: TYPE} for every leaf with a TYPE."""
    out: dict[str, str] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if not isinstance(n, dict):
            continue
        if "TYPE" in n and isinstance(n.get("FULL_PATH"), str):
            out[n["FULL_PATH"]] = str(n["TYPE"])
        contents = n.get("CONTENTS")
        if isinstance(contents, dict):
            stack.extend(contents.values())
    return out


def fetch_avatar(service: OscQueryService, timeout_s: float = 1.0) -> tuple[str | None, dict[str, str]]:
    """(avatar id, {address: type}) of the avatar VRChat has on now."""
    tree = http_json(service.http_host, service.http_port, "/avatar", timeout_s)
    contents = tree.get("CONTENTS", {}) if isinstance(tree, dict) else {}
    change = contents.get("change", {}) if isinstance(contents, dict) else {}
    value = change.get("VALUE") if isinstance(change, dict) else None
    avatar_id = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
    params = parse_parameter_tree(contents.get("parameters", {})) if isinstance(contents, dict) else {}
    return avatar_id, params


def _prefer_loopback(addresses: list[str]) -> str | None:
    # A machine hears its own VRChat on every interface; loopback keeps traffic off the LAN.
    for a in addresses:
        if ipaddress.ip_address(a).is_loopback:
            return a
    return addresses[0] if addresses else None


def discover_vrchat(timeout_s: float = 1.5, interfaces: list[str] | None = None) -> OscQueryService | None:
    """Browse mDNS for VRChat's OSCQuery service and read its OSC port; None if not found.
    ``interfaces`` limits where the queries go (e.g. ["127.0.0.1"]); None: every interface, as
    VRChat and VRCFaceTracking do."""
    try:
        from zeroconf import ServiceBrowser, Zeroconf
    except ImportError:
        log.debug("oscquery: zeroconf is not installed")
        return None
    found: list[str] = []
    event = threading.Event()

    class _Listener:
        def add_service(self, zc, type_, name):  # noqa: D401 - zeroconf callback names
            if name.startswith(VRCHAT_PREFIX):
                found.append(name)
                event.set()

        def update_service(self, zc, type_, name):
            pass

        def remove_service(self, zc, type_, name):
            pass

    try:
        zc = Zeroconf(interfaces=interfaces) if interfaces else Zeroconf()
    except OSError as exc:  # no multicast on this machine
        log.debug("oscquery: mDNS unavailable: %s", exc)
        return None
    try:
        ServiceBrowser(zc, SERVICE_TYPE, _Listener())
        event.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        for name in found:
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(max(0.1, deadline - time.monotonic()) * 1000))
            if info is None:
                continue
            host = _prefer_loopback(info.parsed_addresses())
            if host is None:
                continue
            try:
                host_info = http_json(host, info.port, "/?HOST_INFO", timeout_s)
                osc_port = int(host_info["OSC_PORT"])
                osc_host = str(host_info.get("OSC_IP") or host)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.debug("oscquery: %s did not answer HOST_INFO: %s", name, exc)
                continue
            if osc_host in ("0.0.0.0", "::"):
                osc_host = host
            return OscQueryService(name.split(".")[0], host, info.port, osc_host, osc_port)
        return None
    except (OSError, socket.error) as exc:
        log.debug("oscquery: discovery failed: %s", exc)
        return None
    finally:
        zc.close()
