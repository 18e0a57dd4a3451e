"""Helpers shared by several test files (fixtures stay in conftest.py): free ports, CLI
subprocesses and a running daemon, synthetic faces and takes, independent reference decoders."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import socket
import time
from pathlib import Path

import numpy as np

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusSubscriber
from avatar_bridge.conventions import from_yaw_pitch_roll
from avatar_bridge.takes.format import TakeHeader, TakeWriter
from avatar_bridge.types import FaceState

ROOT = Path(__file__).resolve().parents[1]
ICT_NPZ = ROOT.parent / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "avatar_bridge", *args]


def hermetic_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no user profile or config leaks into a test."""
    import tempfile
    return {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="ab-config-"), **extra}


def start_daemon(*args: str) -> subprocess.Popen:
    env = hermetic_env()
    return subprocess.Popen(cli("run", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def synthetic_states(n: int, fps: float = 60.0, seed: int = 0, t0: float = 1000.0) -> list[FaceState]:
    """Distinct, smoothly moving faces: jawOpen and browInnerUp swing, blinks every second, the head turns."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = i / fps
        bs = (rng.random(52) * 0.05).astype(np.float32)
        bs[17] = 0.5 + 0.45 * math.sin(2 * math.pi * 0.5 * t)          # jawOpen
        bs[43] = 0.4 + 0.35 * math.sin(2 * math.pi * 0.3 * t + 1.0)    # browInnerUp
        blink = 0.95 if (i % int(fps)) < max(2, int(fps / 12)) else 0.02
        bs[0] = bs[7] = blink
        q = from_yaw_pitch_roll(0.3 * math.sin(t), 0.1 * math.cos(t), 0.05)
        out.append(FaceState(blendshapes=bs, head_rotation=tuple(q), head_position=(0.01 * i, 0.0, -0.5),
                             gaze_left=(0.1, -0.05), gaze_right=(0.12, -0.04), confidence=0.9,
                             face_present=(i % 50) != 7, t_capture=t0 + t, frame_index=i))
    return out


def write_synthetic(path: Path, n: int = 50, fps: float = 60.0) -> list[FaceState]:
    states = synthetic_states(n, fps)
    with TakeWriter(path, TakeHeader(fps=fps, source="test")) as w:
        for i, s in enumerate(states):
            w.write(s, seq=i, t=i / fps)
    return states


def unreal_decode(data: bytes) -> dict:
    """Independent decoder following Unreal's receiver: FNboSerializeFromBuffer reads, in network
    byte order, uint8 PacketVer, FName DeviceId, FName SubjectName (each int32 length + bytes),
    FQualifiedFrameTime (int32 frame, float subframe, int32 num, int32 den), uint8 count, floats."""
    off = 0

    def take(fmt):
        nonlocal off
        vals = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return vals

    def string():
        nonlocal off
        (n,) = take(">i")
        assert 0 <= n <= len(data) - off
        s = data[off:off + n].decode("utf-8")
        off += n
        return s

    (version,) = take(">B")
    device, subject = string(), string()
    frame, sub, num, den = take(">ifii")
    (count,) = take(">B")
    curves = take(f">{count}f")
    assert off == len(data), "trailing bytes"
    return dict(version=version, device=device, subject=subject, frame=frame, subframe=sub,
                rate=(num, den), count=count, curves=curves)


class ScalarOneEuro:
    """Casiez et al. 2012, Algorithm 1, transcribed for one scalar channel."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.t = None
        self.dx = 0.0

    @staticmethod
    def alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: float, t: float) -> float:
        if self.x is None:
            self.x, self.t = x, t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx += self.alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * abs(self.dx)
        self.x += self.alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x


def next_faces(bus: str, n: int, timeout: float = 20.0) -> list[dict]:
    """The next ``n`` face messages on ``bus`` as wire maps (fewer if ``timeout`` s pass first)."""
    sub = BusSubscriber(bus)
    try:
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            got = sub.recv(500)
            if got is not None and got[0] == wire.TOPIC_FACE:
                seq, state = wire.decode_face(got[1])
                out.append(wire.face_to_message(state, seq))
        return out
    finally:
        sub.close()


def recv_face(sub: BusSubscriber, timeout_ms: int = 1000) -> tuple[int, FaceState] | None:
    """The next face message on ``sub`` as (seq, FaceState), or None after ``timeout_ms``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        got = sub.recv(max(0, int((deadline - time.monotonic()) * 1000)))
        if got is None:
            return None
        if got[0] == wire.TOPIC_FACE:
            return wire.decode_face(got[1])
