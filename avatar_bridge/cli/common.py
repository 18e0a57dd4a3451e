"""Pieces shared by the command modules: one-line fatal errors and option defaults."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from avatar_bridge.adapters.registry import adapter_entry
from avatar_bridge.bus.sockets import DEFAULT_CONTROL, DEFAULT_PUB
from avatar_bridge.estimators.registry import estimator_help

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

BUS_OPTION = typer.Option(DEFAULT_PUB, "--bus", help="ZeroMQ endpoint of the bus (PUB side).")
CONTROL_OPTION = typer.Option(DEFAULT_CONTROL, "--control", help="ZeroMQ endpoint of the control socket.")
CONTROL_TOKEN_OPTION = typer.Option(None, "--control-token", envvar="AVATAR_BRIDGE_CONTROL_TOKEN",
                                    help="The control socket's secret (required when it is bound beyond loopback; "
                                         "clients send it as \"token\").")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, SIGTERM or SIGHUP (the terminal closed) while the block runs, for a clean stop
    (a take closed, an adapter stopped); the previous handlers come back afterwards."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.signal(sig, lambda *_: event.set()) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def interrupt_noted() -> Iterator[threading.Event]:
    """Ctrl-C while the block runs sets the event instead of raising: a KeyboardInterrupt raised while a
    library loads (onnxruntime, MediaPipe) can surface as an ImportError that falls back to another estimator,
    or be lost, so the caller checks the event afterwards and exits cleanly."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def fail(message: str) -> typer.Exit:
    """Print one red line (no traceback) and return the Exit to raise."""
    # Escaped: messages quote file contents and names, and "[/]" in one would be a rich markup error.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=1)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed exception kinds into a one-line error and exit code 1."""
    try:
        yield
    except kinds as exc:
        raise fail(str(exc)) from None


ESTIMATOR_HELP = estimator_help()


def adapter_flag(name: str, verb: str):
    """An on/off adapter flag (``--vmc``) whose help comes from the adapter registry."""
    return typer.Option(False, f"--{name}", help=f"{verb} {adapter_entry(name).summary}.")

# The signal-chain switches shared by run, process and bench.
SMOOTHING_OPTION = typer.Option("on", "--smoothing", metavar="on|off", help="One Euro smoothing.")
CALIBRATION_OPTION = typer.Option("on", "--calibration", metavar="on|off", help="Apply the calibration profile.")
MIRROR_OPTION = typer.Option(False, "--mirror", help="Selfie view: swap Left/Right shapes, yaw and roll.")
LINK_BLINKS_OPTION = typer.Option(False, "--link-blinks", help="Close both eyes together unless one clearly winks.")
PROFILE_OPTION = typer.Option(None, "--profile", help="Calibration profile name (default: 'default' if saved).")


def on_off(value: str, flag: str) -> bool:
    if value not in ("on", "off"):
        raise fail(f"{flag} takes on or off, not {value!r}")
    return value == "on"


def signal_overrides(smoothing: str, calibration: str, mirror: bool, link_blinks: bool) -> dict:
    """The [signal] table the switches stand for."""
    return {"smoothing": on_off(smoothing, "--smoothing"), "calibration": on_off(calibration, "--calibration"),
            "mirror": mirror, "link_blinks": link_blinks}


# Headset mode (docs/headset.md), shared by run and process.
HEADSET_OPTION = typer.Option(False, "--headset", help="The performer wears a VR headset: read the lower face "
                              "only; eyes, gaze and brows are sent as untracked (VRChat keeps the headset's own).")
ROI_OPTION = typer.Option(None, "--roi", metavar="X,Y,W,H", help="Headset mode: the lower face's region in pixels, "
                          "used whenever the face mesh cannot be fitted under the visor (implies --headset).")
MOUTH_CAMERA_OPTION = typer.Option(False, "--mouth-camera", help="The source is a camera under the headset: the "
                                   "whole frame is the lower face seen from below (implies --headset).")


def headset_overrides(headset: bool, roi: str | None, mouth_camera: bool) -> dict:
    """The [pipeline] keys the headset flags stand for (only those given, so a config file's stay)."""
    from avatar_bridge.tracking.lower_face import Box

    out: dict = {}
    if headset or roi or mouth_camera:
        out["headset"] = True
    if roi:
        try:
            out["roi"] = Box.parse(roi).as_tuple()
        except ValueError as exc:
            raise fail(str(exc)) from None
    if mouth_camera:
        out["mouth_camera"] = True
    return out
