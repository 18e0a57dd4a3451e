"""``preview`` (the live page against a running daemon) and the ``run --preview`` options."""

from __future__ import annotations

import webbrowser
from typing import Callable, Optional

import typer

from avatar_bridge.cli.common import BUS_OPTION, CONTROL_OPTION, CONTROL_TOKEN_OPTION, console, err_console, fail, stop_on_signals
# The server (aiohttp) is imported only where a preview is served, so other commands start and exit faster.

PREVIEW_OPTION = typer.Option(False, "--preview", help="Also serve the live preview page (http://127.0.0.1:8570) "
                                                       "and open it in the browser.")
PREVIEW_HOST_OPTION = typer.Option("127.0.0.1", "--preview-host",
                                   help="Address the preview page listens on; anything but loopback exposes it "
                                        "to the network (the camera view stays loopback-only).")
PREVIEW_PORT_OPTION = typer.Option(8570, "--preview-port", help="Port of the preview page.")
NO_BROWSER_OPTION = typer.Option(False, "--no-browser", help="Serve the preview without opening a browser.")


def start_preview(config: PreviewConfig, open_browser: bool,
                  cleanup: Callable[[], None] = lambda: None) -> PreviewThread:
    """Start the preview server thread and say where it is; on failure run ``cleanup`` and exit with one line."""
    from avatar_bridge.preview.server import PreviewError, PreviewThread, is_loopback
    try:
        thread = PreviewThread(config).start()
    except PreviewError as exc:
        cleanup()
        raise fail(str(exc)) from None
    if not is_loopback(config.host):
        err_console.print(f"[yellow]warning:[/] the preview listens on {config.host}, so other machines can open "
                          "it and drive this daemon's controls; use --preview-host 127.0.0.1 to keep it local")
    console.print(f"preview on [bold]{config.url}[/]")
    if open_browser:
        webbrowser.open(config.url)
    return thread


def preview(
    bus: str = BUS_OPTION,
    control: str = CONTROL_OPTION,
    control_token: Optional[str] = CONTROL_TOKEN_OPTION,
    preview_host: str = PREVIEW_HOST_OPTION,
    preview_port: int = PREVIEW_PORT_OPTION,
    no_browser: bool = NO_BROWSER_OPTION,
) -> None:
    """Serve the live preview page for a daemon that is already running (or a replay), until Ctrl-C."""
    from avatar_bridge.preview.server import PreviewConfig

    config = PreviewConfig(host=preview_host, port=preview_port, bus_endpoint=bus, control_endpoint=control,
                           control_token=control_token)
    with stop_on_signals() as stop:
        thread = start_preview(config, not no_browser)
        console.print(f"watching {bus} (control {control}); it waits for a daemon if none is running. Ctrl-C stops.")
        try:
            stop.wait()
        finally:
            thread.stop()


def register(app: typer.Typer) -> None:
    app.command()(preview)
