"""``avatar-bridge bridge <protocol>`` (one adapter as its own process) and ``avatar-bridge doctor``."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer

from avatar_bridge.adapters.registry import adapter_entry, create_adapter, list_adapters, make_config
from avatar_bridge.adapters.runner import AdapterThread
from avatar_bridge.adapters.udp import port_owner
from avatar_bridge.bus.sockets import DEFAULT_CONTROL
from avatar_bridge.cli.common import BUS_OPTION, stop_on_signals, user_errors

log = logging.getLogger(__name__)

bridge_app = typer.Typer(help="Run one protocol adapter as its own process, fed from the bus, until Ctrl-C.",
                         no_args_is_help=True)

HOST = typer.Option(None, "--host", help="Where to send (default 127.0.0.1: this machine only).")
PORT = typer.Option(None, "--port", help="UDP port to send to (default: the protocol's).")
RATE = typer.Option(None, "--rate", help="Most frames per second to send.")
BUS = BUS_OPTION


def _run(name: str, bus: str, options: dict[str, Any]) -> None:
    with user_errors(ValueError, TypeError):
        adapter = create_adapter(name, options)
    thread = AdapterThread(adapter, bus)
    with stop_on_signals() as stop:
        _serve(name, bus, thread, stop)
    s = thread.stats()
    typer.echo(f"{name}: stopped after {s['received']} frames, {s['packets']} packets, {s['errors']} errors")


def _serve(name: str, bus: str, thread: AdapterThread, stop: threading.Event) -> None:
    """Run the adapter thread until a signal, warning once if no frames come and reporting every 10 s."""
    thread.start()
    log.info("%s: listening to the bus at %s; Ctrl-C to stop", name, bus)
    started, warned, last_report = time.monotonic(), False, time.monotonic()
    try:
        while not stop.wait(0.2) and thread.is_alive():
            now = time.monotonic()
            if not warned and thread.received == 0 and now - started > 3:
                warned = True
                log.warning("%s: no face frames from %s after 3 s: is `avatar-bridge run` running, and on that "
                            "--bus endpoint?", name, bus)
            if now - last_report >= 10:
                last_report = now
                s = thread.stats()
                log.info("%s: %d frames in, %d packets out to %s, %d errors", name, s["received"], s["packets"],
                         s["target"], s["errors"])
    finally:
        thread.stop()


@bridge_app.command("vmc")
def bridge_vmc(host: Optional[str] = HOST, port: Optional[int] = PORT, rate: Optional[float] = RATE, bus: str = BUS,
               arkit_names: bool = typer.Option(False, "--arkit-names", help="Send eyeBlinkLeft, not EyeBlinkLeft."),
               eye_bones: bool = typer.Option(True, "--eye-bones/--no-eye-bones", help="Send LeftEye/RightEye bones.")) -> None:
    """VMC protocol to VSeeFace, Warudo, VNyan, VMC (default port 39539)."""
    _run("vmc", bus, dict(host=host, port=port, rate_hz=rate, arkit_names=arkit_names, eye_bones=eye_bones))


@bridge_app.command("vrchat")
def bridge_vrchat(host: Optional[str] = HOST, port: Optional[int] = typer.Option(
                      None, "--port", help="VRChat's OSC input port (default: found by OSCQuery, else 9000)."),
                  rate: Optional[float] = RATE, bus: str = BUS,
                  listen_port: Optional[int] = typer.Option(9001, "--listen-port",
                                                            help="Where VRChat sends /avatar/change (0 = any free port)."),
                  prefix: Optional[str] = typer.Option(None, "--prefix",
                                                       help="Parameter prefix until the avatar is known (default FT/v2/)."),
                  avatar_config_dir: Optional[Path] = typer.Option(None, "--avatar-config-dir",
                                                                   help="VRChat's OSC folder with usr_*/Avatars/*.json."),
                  oscquery: bool = typer.Option(True, "--oscquery/--no-oscquery", help="Find VRChat with OSCQuery."),
                  native_eye: bool = typer.Option(True, "--native-eye/--no-native-eye",
                                                  help="Also drive VRChat's own eye tracking (/tracking/eye)."),
                  threshold: Optional[float] = typer.Option(None, "--threshold", help="Smallest change re-sent.")) -> None:
    """VRChat OSC: VRCFaceTracking v2 parameters and native eye tracking (default 127.0.0.1:9000)."""
    _run("vrchat", bus, dict(host=host, port=port, rate_hz=rate, listen_port=listen_port, prefix=prefix,
                             avatar_config_dir=str(avatar_config_dir) if avatar_config_dir else None,
                             oscquery=oscquery, native_eye=native_eye, threshold=threshold))


@bridge_app.command("livelink")
def bridge_livelink(host: Optional[str] = HOST, port: Optional[int] = PORT, rate: Optional[float] = RATE, bus: str = BUS,
                    subject: Optional[str] = typer.Option(None, "--subject", help="Live Link subject name."),
                    mirrored: bool = typer.Option(False, "--mirrored", help="Unreal's mirrored face direction.")) -> None:
    """Live Link Face packets for Unreal's stock Live Link Face source (default port 11111)."""
    _run("livelink", bus, dict(host=host, port=port, rate_hz=rate, subject=subject, mirrored=mirrored))


@bridge_app.command("ifacialmocap")
def bridge_ifacialmocap(host: Optional[str] = HOST, port: Optional[int] = PORT, rate: Optional[float] = RATE,
                        bus: str = BUS, listen_port: Optional[int] = typer.Option(
                            None, "--listen-port", help="Also follow a receiving app's handshake on this port.")) -> None:
    """iFacialMocap text protocol for VSeeFace, VTube Studio, Warudo (default port 49983)."""
    _run("ifacialmocap", bus, dict(host=host, port=port, rate_hz=rate, listen_port=listen_port))


# ------------------------------------------------------------------------------------ doctor
def _tcp_port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _check_bus(bus: str, control: str) -> list[tuple[str, str, str, str]]:
    from avatar_bridge.bus.sockets import control_request
    try:
        reply = control_request({"cmd": "status"}, control, timeout_ms=700)
        return [("bus", "OK", f"a daemon answers on {control} ({'ok' if reply.get('ok') else reply.get('error')})", "")]
    except (TimeoutError, OSError, ValueError):
        pass
    rows = []
    for label, endpoint in (("bus publisher", bus), ("bus control", control)):
        try:
            port = int(endpoint.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            rows.append((label, "WARN", f"cannot check {endpoint}", "use tcp://HOST:PORT"))
            continue
        if _tcp_port_free(port):
            rows.append((label, "OK", f"port {port} free (no daemon running yet)", "start it: avatar-bridge run"))
        else:
            owner = port_owner(port, "tcp") or "another program"
            rows.append((label, "FAIL", f"port {port} is taken by {owner}, which does not answer as avatar-bridge",
                         "stop that program, or run with --bus/--control on other ports"))
    return rows


def _check_camera(index: int = 0) -> tuple[str, str, str, str]:
    try:
        import cv2
    except ImportError:
        return ("camera", "FAIL", "OpenCV is not installed", "pip install opencv-python-headless")
    cap = cv2.VideoCapture(index)
    try:
        if not cap.isOpened():
            return ("camera", "WARN", f"no camera found at index {index}",
                    "plug in a webcam, close apps using it, or run from a video/recording source")
        ok, _ = cap.read()
        if not ok:
            return ("camera", "WARN", f"camera {index} opens but gives no frames", "close other apps using it")
        return ("camera", "OK", f"camera {index} gives frames", "")
    finally:
        cap.release()


def _check_estimators() -> list[tuple[str, str, str, str]]:
    """Build every registered estimator once, so a missing or stale model shows here, not at `run`."""
    from avatar_bridge.estimators.registry import EstimatorError, create_estimator, list_estimators
    rows = []
    for name in list_estimators():
        try:
            built = create_estimator(name)
        except (EstimatorError, OSError, ValueError) as exc:
            rows.append((f"model: {name}", "WARN", str(exc), "only needed for --estimator " + name))
            continue
        detail = f"runs {built.name}" if name == "auto" else "loads"
        rows.append((f"model: {name}", "OK", detail, ""))
    return rows


def _check_target(name: str, config) -> list[tuple[str, str, str, str]]:
    host, port = config.host, config.port
    rows = []
    if port is None:  # vrchat with OSCQuery
        from avatar_bridge.adapters import oscquery
        service = oscquery.discover_vrchat(config.discovery_timeout_s) if config.oscquery else None
        if service:
            rows.append((f"{name} OSCQuery", "OK", f"found {service.name}; OSC input {service.osc_host}:{service.osc_port}", ""))
            host, port = service.osc_host, service.osc_port
        else:
            rows.append((f"{name} OSCQuery", "WARN", "no VRChat found by OSCQuery; will send to port 9000",
                         "start VRChat with OSC enabled, or give the port: run --vrchat-port N (bridge vrchat --port N)"))
            port = 9000
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][4][0]
    except (socket.gaierror, UnicodeError) as exc:
        return rows + [(f"{name} target", "FAIL", f"cannot resolve {host!r}: {exc}", "fix the host: run --adapter-host (bridge NAME --host)")]
    fix = adapter_entry(name).receiver_hint.format(port=port)
    if addr.startswith("127.") or addr == "::1":
        if _udp_port_free(addr, port):
            rows.append((f"{name} target", "WARN", f"nothing listens on {host}:{port} yet", fix))
        else:
            owner = port_owner(port, "udp")
            rows.append((f"{name} target", "OK", f"{host}:{port} is open{f' ({owner})' if owner else ''}", ""))
    else:
        rows.append((f"{name} target", "OK", f"{host} -> {addr}:{port} (remote; cannot see if it listens)", fix))
    listen = getattr(config, "listen_port", None)
    if listen and not _udp_port_free(getattr(config, "listen_host", "0.0.0.0"), listen):
        owner = port_owner(listen, "udp") or "another program"
        rows.append((f"{name} listen", "WARN", f"UDP {listen} is taken by {owner}",
                     "close it or pick another: bridge NAME --listen-port; avatar changes would go unnoticed"))
    return rows


def doctor(adapters: str = typer.Option(",".join(list_adapters()), "--adapters",
                                        help=f"Comma-separated adapters to check, of {', '.join(list_adapters())}."),
           host: Optional[str] = typer.Option(None, "--host", help="Target host to check (default 127.0.0.1)."),
           bus: str = BUS, control: str = typer.Option(DEFAULT_CONTROL, "--control", help="Control endpoint."),
           camera: int = typer.Option(0, "--camera", help="Camera index to try."),
           skip_camera: bool = typer.Option(False, "--skip-camera", help="Don't open the camera.")) -> None:
    """Check the whole chain (bus, camera, model, each adapter's target) and say how to fix what is wrong."""
    from rich.console import Console
    from rich.table import Table

    names = [n.strip() for n in adapters.split(",") if n.strip()]
    rows: list[tuple[str, str, str, str]] = []
    rows += _check_bus(bus, control)
    if not skip_camera:
        rows.append(_check_camera(camera))
    rows += _check_estimators()
    for name in names:
        with user_errors(ValueError):
            config = make_config(name, {"host": host})
        rows += _check_target(name, config)
    table = Table(title="avatar-bridge doctor")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col)
    colours = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for check, status, detail, fix in rows:
        table.add_row(check, f"[{colours[status]}]{status}[/]", detail, fix)
    Console().print(table)
    if any(r[1] == "FAIL" for r in rows):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(bridge_app, name="bridge")
    app.command("doctor")(doctor)
