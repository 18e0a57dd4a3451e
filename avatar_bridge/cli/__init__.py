"""The ``avatar-bridge`` command line. Each command group lives in its own module with a
``register(app)`` function; this file only assembles them."""

from __future__ import annotations

import importlib
import logging

import typer

from avatar_bridge.cli.native_logs import silence_native_logs

app = typer.Typer(
    name="avatar-bridge",
    help="Webcam face -> 52 ARKit blendshapes, head pose and gaze, streamed to avatar apps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich markup ate "[source]" in help text and showed "<bool>" on every on/off flag.
    rich_markup_mode=None,
)

# One line per command module; each module defines register(app: typer.Typer) -> None.
COMMAND_MODULES = [
    "avatar_bridge.cli.daemon_commands",
    "avatar_bridge.cli.take_commands",
    "avatar_bridge.cli.bridge_commands",
    "avatar_bridge.cli.calibrate_commands",
    "avatar_bridge.cli.preview_commands",
    "avatar_bridge.cli.enroll_commands",
]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v",
                                       help="Log debug detail, and MediaPipe's and OpenCV's own messages.")) -> None:
    if not verbose:
        silence_native_logs()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
