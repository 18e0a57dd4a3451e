"""Silencing the C++ libraries' chatter (MediaPipe's absl and TFLite lines, OpenCV's probe warnings)
unless ``--verbose``.

absl writes straight to file descriptor 2 before ``absl::InitializeLog()``, which MediaPipe's Python
wheel never calls, and no environment variable lowers its threshold (nor does OpenCV's wheel expose
its log level); so fd 2 is put behind a pipe whose reader drops only the known noise and passes every
other native line (a real error, a crash message) through. Python's own output bypasses the pipe: ``sys.stderr`` is rebound to the real stderr.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# W/I: absl warning and info lines (E and F, errors and fatals, still show); the absl banner about
# InitializeLog; TFLite's delegate notice; OpenCV's "[ WARN:0@0.1]" / "[ERROR:0@0.1]" probe lines.
NOISE = re.compile(rb"^(?:[WI]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog"
                   rb"|INFO: Created TensorFlow Lite|\[ ?(?:WARN|ERROR|INFO):\d+@)")


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def silence_native_logs() -> None:
    """Filter native stderr for the rest of this process; a no-op when stderr is not fd 2: an in-process
    test runner's capture, or a second call (sys.stderr is then the saved descriptor)."""
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")

    def forward() -> None:
        with open(read_end, "rb") as pipe:
            for line in pipe:
                if not is_noise(line):
                    os.write(real, line)

    reader = threading.Thread(target=forward, name="native-stderr", daemon=True)
    reader.start()

    def drain() -> None:
        # Closing our end of the pipe lets the reader pass on the last lines before the process exits.
        os.dup2(real, 2)
        reader.join(timeout=1.0)

    atexit.register(drain)
