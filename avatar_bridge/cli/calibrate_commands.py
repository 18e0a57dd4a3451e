"""``avatar-bridge calibrate``: record this performer's neutral face (or widest expressions) in the
running daemon and save it as a profile (the daemon side is avatar_bridge/signal/calibration.py)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import typer

from avatar_bridge.bus.sockets import DEFAULT_CONTROL, control_request
from avatar_bridge.cli.common import CONTROL_TOKEN_OPTION

log = logging.getLogger(__name__)

from avatar_bridge.signal.calibration import DEFAULT_SECONDS
PROMPTS = {
    "neutral": "Hold a neutral face: relaxed, mouth closed, eyes open, looking into the camera",
    "range": "Make your widest expressions: open the mouth wide, smile, frown, raise and lower the brows, "
             "close each eye, puff the cheeks",
}


def run_calibration(kind: str, seconds: float | None, profile: str | None, control: str,
                    echo: Callable[[str], None], poll_s: float = 0.1, timeout_ms: int = 1500,
                    token: str | None = None) -> int:
    """Drive one calibration on the daemon at ``control``; returns the exit code."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    seconds = seconds or DEFAULT_SECONDS[kind]
    request: dict[str, Any] = {"cmd": "calibrate", "kind": kind, "seconds": seconds}
    if profile:
        request["profile"] = profile
    try:
        reply = control_request(request, endpoint=control, timeout_ms=timeout_ms, token=token)
    except TimeoutError:
        echo(f"no daemon on {control}: start `avatar-bridge run` first")
        return 1
    if not reply.get("ok"):
        echo(f"calibration refused: {reply.get('error')}")
        return 1
    echo(f"{PROMPTS[kind]} for {seconds:g} s ...")
    status = reply
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[left]}"),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(kind, total=seconds, left="")
        deadline = time.monotonic() + seconds + 10.0  # frames may arrive late; never wait forever
        while status.get("state") == "collecting":
            if time.monotonic() > deadline:
                echo("the daemon stopped reporting progress (is the camera delivering frames?)")
                return 1
            time.sleep(poll_s)
            try:
                status = control_request({"cmd": "calibrate.status"}, endpoint=control, timeout_ms=timeout_ms,
                                         token=token)
            except TimeoutError:
                echo(f"the daemon on {control} stopped answering during calibration")
                return 1
            left = float(status.get("seconds_left", 0.0))
            bar.update(task, completed=seconds - left, left=f"{status.get('frames', 0)} frames")
    if status.get("state") != "done":
        echo(f"calibration failed: {status.get('message') or status.get('error') or status}")
        return 1
    where = status.get("profile_path", "(not saved)")
    echo(f"calibrated ({kind}, {status.get('frames')} frames); profile saved to {where}")
    if kind == "neutral":
        echo("optionally run `avatar-bridge calibrate --range` next, so each shape can reach 1.0")
    return 0


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(
        profile: Optional[str] = typer.Option(None, "--profile", help="Profile to save to (default: the one the daemon runs with)."),
        range_: bool = typer.Option(False, "--range", help="Record your widest expressions instead of the neutral face."),
        seconds: Optional[float] = typer.Option(None, "--seconds", help="How long to record (default 2 s neutral, 8 s range)."),
        control: str = typer.Option(DEFAULT_CONTROL, "--control", help="The running daemon's control socket."),
        control_token: Optional[str] = CONTROL_TOKEN_OPTION,
    ) -> None:
        """Record your neutral face (or, with --range, your widest expressions) and save a profile."""
        code = run_calibration("range" if range_ else "neutral", seconds, profile, control, echo=typer.echo,
                               token=control_token)
        raise typer.Exit(code)
