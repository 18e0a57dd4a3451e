"""`avatar-bridge bridge ...` and `doctor`: one clear line on bad input, a table of checks."""

import signal
import socket
import subprocess
import sys
import time

import typer
from typer.testing import CliRunner

from avatar_bridge.adapters.registry import list_adapters
from avatar_bridge.cli import bridge_commands


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    bridge_commands.register(app)
    return app


def test_every_bridge_command_has_help():
    runner = CliRunner()
    for name in list_adapters():
        result = runner.invoke(make_app(), ["bridge", name, "--help"])
        assert result.exit_code == 0 and "--port" in result.output


def test_bad_port_is_one_line_not_a_traceback():
    result = CliRunner().invoke(make_app(), ["bridge", "vmc", "--port", "70000"])
    assert result.exit_code == 1
    assert "port 70000 is not a UDP port" in result.output and "Traceback" not in result.output


def test_doctor_prints_a_table_of_checks():
    result = CliRunner().invoke(make_app(), ["doctor", "--skip-camera", "--adapters", "vmc,livelink",
                                             "--bus", "tcp://127.0.0.1:5990", "--control", "tcp://127.0.0.1:5991"])
    assert "vmc target" in result.output and "livelink target" in result.output and "model" in result.output
    assert result.exit_code in (0, 1)


def test_doctor_says_when_a_target_host_does_not_resolve():
    result = CliRunner().invoke(make_app(), ["doctor", "--skip-camera", "--adapters", "vmc", "--host",
                                             "no-such-host.invalid", "--bus", "tcp://127.0.0.1:5990",
                                             "--control", "tcp://127.0.0.1:5991"])
    assert result.exit_code == 1 and "FAIL" in result.output


def test_bridge_process_exits_cleanly_on_sigterm():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import logging, typer, sys; logging.basicConfig(level=logging.INFO); from avatar_bridge.cli import bridge_commands as b; app = typer.Typer(); "
            "app.callback()(lambda: None); b.register(app); sys.argv = ['x'] + sys.argv[1:]; app()")
    proc = subprocess.Popen([sys.executable, "-c", code, "bridge", "vmc", "--bus", f"tcp://127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the handlers are installed
        line = proc.stdout.readline()
        lines.append(line)
        if "listening to the bus" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    out = "".join(lines) + proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, out
    assert "vmc: stopped after 0 frames" in out
