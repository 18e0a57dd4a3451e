"""The ``avatar-bridge`` command line. Each command group lives in its own module with a
``register(app)`` function; this file only assembles them."""

from __future__ import annotations

import signal
import sys
import threading


class _InterruptWhileLoading:
    """Ctrl-C while the command line's imports run only sets a flag, acted on once they are done: a
    KeyboardInterrupt raised inside a C extension's initialisation becomes an ImportError with a traceback."""

    def __init__(self) -> None:
        self.hit = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, *_: object) -> None:
        self.hit = True

    def release(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.hit:
            print("interrupted", file=sys.stderr)
            sys.exit(130)


_loading = _InterruptWhileLoading()
import gc  # noqa: E402 - imported after the handler above on purpose
import importlib  # noqa: E402
import logging  # noqa: E402

import typer  # noqa: E402

from avatar_bridge.cli.native_logs import silence_native_logs  # noqa: E402

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
_loading.release()
gc.freeze()   # the modules just loaded live until exit: keeping them out of every collection makes exit faster


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:   # Ctrl-C before a command installed its own handling: one line, no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
