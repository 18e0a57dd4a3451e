"""Pieces shared by the command modules: one-line fatal errors and option defaults."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from avatar_bridge.bus import DEFAULT_CONTROL, DEFAULT_PUB

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

BUS_OPTION = typer.Option(DEFAULT_PUB, "--bus", help="ZeroMQ endpoint of the bus (PUB side).")
CONTROL_OPTION = typer.Option(DEFAULT_CONTROL, "--control", help="ZeroMQ endpoint of the control socket.")


def fail(message: str) -> typer.Exit:
    """Print one red line (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed exception kinds into a one-line error and exit code 1."""
    try:
        yield
    except kinds as exc:
        raise fail(str(exc)) from None
