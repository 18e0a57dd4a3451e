"""The thin UDP transport under every adapter: send that never raises, one log line per distinct
failure, a frame-rate gate, and "who holds this port" for the warnings users need."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field

HINTS = {
    errno.ECONNREFUSED: "nothing is listening there (ICMP port unreachable): start the receiving app "
                        "and check its port",
    errno.EHOSTUNREACH: "no route to that host: check the address and that both machines share a network",
    errno.ENETUNREACH: "network unreachable: check the address and your network connection",
    errno.EMSGSIZE: "packet larger than the network allows",
}


class UdpTarget:
    """A UDP socket aimed at host:port. ``send`` returns False instead of raising on any network
    error; each distinct error is logged once (again after ``relog_s`` quiet seconds) and counted."""

    def __init__(self, name: str, host: str, port: int, logger: logging.Logger | None = None,
                 retry_resolve_s: float = 5.0, relog_s: float = 60.0) -> None:
        self.name, self.host, self.port = name, host, int(port)
        self.log = logger or logging.getLogger(f"avatar_bridge.adapters.{name}")
        self.retry_resolve_s, self.relog_s = retry_resolve_s, relog_s
        self.packets = self.bytes = self.errors = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        self._next_resolve = 0.0
        self._logged: dict[str, float] = {}
        self._announced = False

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def _error(self, key: str, message: str) -> None:
        self.errors += 1
        self.last_error = message
        now = time.monotonic()
        last = self._logged.get(key)
        if last is None or now - last > self.relog_s:
            self.log.warning("%s: %s", self.name, message)
        self._logged[key] = now

    def _open(self) -> bool:
        now = time.monotonic()
        if now < self._next_resolve:
            return False
        self._next_resolve = now + self.retry_resolve_s
        try:
            family, _, _, _, addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError, OverflowError, OSError) as exc:
            self._error("resolve", f"cannot resolve host {self.host!r} ({exc}); nothing is sent. "
                                   f"Fix --host (an IP like 127.0.0.1 or a name this machine can look up)")
            return False
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # connect() so the kernel reports ICMP port-unreachable back to us as ECONNREFUSED
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            self._error(f"connect:{exc.errno}", f"cannot send to {self.target}: {exc.strerror or exc}")
            return False
        sock.setblocking(False)
        self._sock = sock
        if not self._announced:
            self.log.info("%s: sending UDP to %s (%s)", self.name, self.target, addr[0])
            self._announced = True
        return True

    def send(self, data: bytes) -> bool:
        if self._sock is None and not self._open():
            return False
        try:
            self._sock.send(data)  # type: ignore[union-attr]
        except BlockingIOError:
            self._error("full", f"send buffer full towards {self.target}; frame dropped")
            return False
        except OSError as exc:
            hint = HINTS.get(exc.errno or 0, exc.strerror or str(exc))
            self._error(f"errno:{exc.errno}", f"cannot deliver to {self.target}: {hint}")
            return False
        self.packets += 1
        self.bytes += len(data)
        return True

    def stats(self) -> dict:
        return {"target": self.target, "packets": self.packets, "bytes": self.bytes,
                "errors": self.errors, "last_error": self.last_error}

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class RateGate:
    """Drops frames that arrive faster than ``rate_hz`` (0 or less = no limit)."""

    rate_hz: float
    dropped: int = 0
    _next: float = field(default=0.0, repr=False)

    def allow(self, now: float | None = None) -> bool:
        if self.rate_hz <= 0:
            return True
        now = time.monotonic() if now is None else now
        period = 1.0 / self.rate_hz
        # Half a period of slack so frames arriving at exactly rate_hz, with jitter, all pass; the
        # schedule advances one period per frame, so the long-run rate still never exceeds rate_hz.
        if now < self._next - 0.5 * period:
            self.dropped += 1
            return False
        self._next = max(self._next, now - period) + period  # no burst after a pause
        return True


def port_owner(port: int, proto: str = "udp") -> str:
    """Best effort "name (pid N)" of the local process holding ``port``, or "" when the OS won't say."""
    try:
        import psutil  # optional; not a dependency
        kind = "udp" if proto == "udp" else "tcp"
        for conn in psutil.net_connections(kind=kind):
            if conn.laddr and conn.laddr.port == port and conn.pid:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except Exception:  # psutil missing or access denied: fall through to /proc
        pass
    if not sys.platform.startswith("linux"):
        return ""
    inodes = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    if not inodes:
        return ""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    with open(f"/proc/{pid}/comm") as fh:
                        return f"{fh.read().strip()} (pid {pid})"
        except OSError:
            continue
    return "another process (the OS did not say which)"


def bind_udp(name: str, host: str, port: int, logger: logging.Logger) -> socket.socket | None:
    """Bind a UDP listening socket; on failure log one warning naming the holder, return None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        owner = port_owner(port, "udp") if exc.errno == errno.EADDRINUSE else ""
        held = f", held by {owner}" if owner else ""
        logger.warning("%s: cannot listen on UDP %s:%d: %s%s. Close that program or pick another port",
                       name, host, port, exc.strerror or exc, held)
        return None
    return sock
