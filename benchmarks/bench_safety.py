"""How fast the daemon's safety paths are: a recording stopped by a signal, and a flood of bad requests.

    python benchmarks/bench_safety.py [--trials 5] [--bad 1000]

Starts ``avatar-bridge run`` on the demo clip (30 fps, geometry estimator) and prints:

- for SIGINT and SIGHUP, while the daemon streams: how long ``avatar-bridge record`` takes after the
  signal to print its summary (the take is closed by then) and to exit (that adds the interpreter's
  own shutdown), median and max over ``--trials``; and whether each take had its end record and the
  frame count the command printed;
- how long ``--bad`` bad control requests take to be answered, and what they cost the face stream
  (faces published per second during the flood against before it) and the daemon's log.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "avatar_bridge", *args]


def _published(control: str) -> tuple[int, float]:
    from avatar_bridge.bus.sockets import control_request
    return control_request({"cmd": "status"}, control)["frames_published"], time.monotonic()


def main(argv=None) -> None:
    import msgpack
    import zmq

    from avatar_bridge.bus.sockets import control_request
    from avatar_bridge.takes.format import read_take

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--bad", type=int, default=1000)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-safety-"))
    from avatar_bridge.runtime.benchmark import free_tcp_endpoint
    bus, control = free_tcp_endpoint(), free_tcp_endpoint()
    log = open(work / "daemon.log", "w")
    daemon = subprocess.Popen(_cli("run", "--bus", bus, "--control", control, "--estimator", "geometry",
                                   "--takes-dir", str(work / "takes")), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                control_request({"cmd": "ping"}, control, timeout_ms=500)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start")
        for sig in (signal.SIGINT, signal.SIGHUP):
            summary_ms, exit_ms, clean = [], [], 0
            for i in range(args.trials):
                take = work / f"{sig.name}-{i}.abr"
                rec = subprocess.Popen(_cli("record", str(take), "--bus", bus, "--control", control),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                rec.stdout.readline()
                time.sleep(1.5)
                sent = time.monotonic()
                rec.send_signal(sig)
                out = ""
                for line in rec.stdout:
                    out += line
                    if line.startswith("wrote "):
                        summary_ms.append((time.monotonic() - sent) * 1000)
                rec.wait(30)
                exit_ms.append((time.monotonic() - sent) * 1000)
                t = read_take(take)
                printed = re.search(r"wrote (\d+) frames", out)
                clean += int(t.end is not None and printed is not None and int(printed.group(1)) == len(t))
            print(f"record stopped by {sig.name}: summary printed after median {statistics.median(summary_ms):.0f} ms "
                  f"(max {max(summary_ms):.0f}), exited after median {statistics.median(exit_ms):.0f} ms "
                  f"(max {max(exit_ms):.0f}); {clean}/{args.trials} takes clean with the printed count")

        n0, t0 = _published(control)
        time.sleep(2.0)
        n1, t1 = _published(control)
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(control)
        size0 = (work / "daemon.log").stat().st_size
        start = time.monotonic()
        for _ in range(args.bad):
            sock.send_multipart([b"", msgpack.packb({"cmd": "x" * 5000})])
        for _ in range(args.bad):
            sock.recv_multipart()
        flood_s = time.monotonic() - start
        n2, t2 = _published(control)
        sock.close(linger=0)
        print(f"{args.bad} bad requests answered in {flood_s:.2f} s; faces {(n1 - n0) / (t1 - t0):.1f}/s before, "
              f"{(n2 - n1) / (t2 - t1):.1f}/s across the flood; log grew {(work / 'daemon.log').stat().st_size - size0} bytes")
    finally:
        daemon.terminate()
        daemon.wait(15)
        log.close()


if __name__ == "__main__":
    main()
