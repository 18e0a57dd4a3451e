"""Recording through a running daemon's control socket (record.start / record.stop)."""

from __future__ import annotations

import subprocess

from avatar_bridge.bus.sockets import control_request
from avatar_bridge.takes.format import read_take
from helpers import cli, hermetic_env, start_daemon, stop, wait_for



def test_record_via_daemon_writes_every_frame_it_published(endpoints, tmp_path):
    bus, control = endpoints
    proc = start_daemon("--bus", bus, "--control", control, "--takes-dir", str(tmp_path))
    take = tmp_path / "live.abr"   # in the daemon's takes folder, the only place record.start writes
    try:
        wait_for(lambda: _answers(control), timeout=40)
        result = subprocess.run(cli("record", str(take), "--via-daemon", "--control", control, "--bus", bus,
                                    "--duration", "2"), capture_output=True, text=True, timeout=60, env=hermetic_env())
        status = control_request({"cmd": "record.status"}, control)
    finally:
        stop(proc)
    assert result.returncode == 0, result.stdout + result.stderr
    frames = read_take(take).frames
    assert len(frames) >= 30, "about 2 s of a 30 fps stream"
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no message lost between daemon and take"
    assert status["recording"] is False and status["last"]["frames"] == len(frames)


def _answers(control: str) -> bool:
    try:
        return control_request({"cmd": "ping"}, control, timeout_ms=500)["ok"]
    except TimeoutError:
        return False
