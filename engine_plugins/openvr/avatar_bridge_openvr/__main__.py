"""``python -m avatar_bridge_openvr``: the SteamVR dashboard panel and the HMD head pose (../README.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from avatar_bridge.bus.sockets import DEFAULT_CONTROL, DEFAULT_PUB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avatar_bridge_openvr",
                                 description="avatar-bridge in SteamVR: a dashboard panel (tracking, face, headset "
                                             "mode, strongest shapes, fps, Calibrate and Recenter) and the HMD's "
                                             "rotation published as the face's head pose.")
    ap.add_argument("--bus", default=DEFAULT_PUB, help=f"the daemon's bus (default {DEFAULT_PUB})")
    ap.add_argument("--control", default=DEFAULT_CONTROL, help=f"the daemon's control socket (default {DEFAULT_CONTROL})")
    ap.add_argument("--no-hmd-head", action="store_true", help="leave the head pose to the camera")
    ap.add_argument("--rate", type=float, default=90.0, help="HMD poses sent per second (default 90)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")
    try:
        import openvr
    except ImportError:
        print("error: the openvr Python bindings are not installed: pip install 'avatar-bridge[openvr]' "
              "(or pip install openvr)", file=sys.stderr)
        return 1
    from avatar_bridge_openvr.app import Companion, CompanionConfig
    from avatar_bridge_openvr.openvr_layer import OpenVRLayer

    try:
        layer = OpenVRLayer(openvr)
    except Exception as exc:  # pyopenvr raises its own OpenVRError_* types; all mean "no SteamVR here"
        print(f"error: cannot start an OpenVR overlay ({exc}); start SteamVR first", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    companion = Companion(layer, CompanionConfig(bus=a.bus, control=a.control, rate_hz=a.rate,
                                                 hmd_head=not a.no_hmd_head))
    print(f"avatar-bridge panel in the SteamVR dashboard; bus {a.bus}, control {a.control}; Ctrl-C stops")
    try:
        companion.run(stop.is_set)
    finally:
        companion.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
