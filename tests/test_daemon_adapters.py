"""A live daemon on the demo source with adapters on: what reaches the apps matches the bus."""

from __future__ import annotations

import socket
import time

import numpy as np
from pythonosc.osc_bundle import OscBundle

from avatar_bridge.bus import wire
from avatar_bridge.adapters.vmc import VMC_PERFECT_SYNC_NAMES
from avatar_bridge.bus.sockets import BusSubscriber, control_request
from helpers import start_daemon, stop, unreal_decode


F32 = 1e-6


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    return s


def test_live_daemon_feeds_vmc_and_live_link_face_with_the_bus_values(endpoints):
    bus, control = endpoints
    vmc_rx, llf_rx = udp_socket(), udp_socket()
    proc = start_daemon("--bus", bus, "--control", control, "--vmc", "--vmc-port", str(vmc_rx.getsockname()[1]),
                        "--livelink", "--livelink-port", str(llf_rx.getsockname()[1]), "--livelink-subject", "Perf1")
    sub = BusSubscriber(bus)
    bus_frames, vmc_frames, llf_frames = [], [], []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (len(vmc_frames) < 30 or len(llf_frames) < 30):
            got = sub.recv(10)
            if got:
                bus_frames.append(np.array(wire.decode_face_message(got[1])["bs"]))
            for rx, out in ((vmc_rx, vmc_frames), (llf_rx, llf_frames)):
                try:
                    out.append(rx.recv(65536))
                except (socket.timeout, BlockingIOError):
                    pass
        status = control_request({"cmd": "status"}, control)
    finally:
        sub.close()
        stop(proc)
        vmc_rx.close()
        llf_rx.close()
    assert len(vmc_frames) >= 30 and len(llf_frames) >= 30
    bus_bs = np.stack(bus_frames)

    def on_bus(values: np.ndarray) -> bool:
        return bool(np.any(np.all(np.abs(bus_bs - values) <= F32, axis=1)))

    matched = 0
    for data in vmc_frames:   # decoded by python-osc, not by us
        blends = {m.params[0]: m.params[1] for m in OscBundle(data) if m.address == "/VMC/Ext/Blend/Val"}
        assert list(blends) == list(VMC_PERFECT_SYNC_NAMES)
        matched += on_bus(np.array([blends[n] for n in VMC_PERFECT_SYNC_NAMES]))
    for data in llf_frames:   # decoded following Unreal's receiver, independently of our encoder
        packet = unreal_decode(data)
        assert packet["subject"] == "Perf1" and packet["count"] == 61
        matched += on_bus(np.array(packet["curves"][:52]))
    # The first few packets can predate our subscription; everything after must match a bus frame.
    assert matched >= len(vmc_frames) + len(llf_frames) - 10
    adapters = status["adapters"]
    assert adapters["vmc"]["packets"] > 0 and adapters["livelink"]["packets"] > 0
