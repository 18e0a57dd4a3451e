"""Take files (``.abr``): an append-only, framed, checksummed record of FaceStates (docs/takes.md).

Layout: an 8-byte file magic, then records. Every record is::

    4 bytes  b"\\xfeABR"             record mark (lets a reader resync after damage)
    1 byte   kind                    b"H" header, b"F" face frame, b"E" end of take
    4 bytes  payload length           uint32 little-endian
    4 bytes  CRC-32                   zlib.crc32 of kind + length + payload, uint32 little-endian
    N bytes  payload                  msgpack

The first record is the header; each ``F`` payload is ``{"rt": float64, "msg": bin}`` where ``msg``
is the bus's schema-v1 ``face`` payload exactly as published and ``rt`` the take time in seconds;
``E`` (written on a clean stop) holds the summary. The file format is hand-written because no
maintained library offers an append-only, crash-tolerant, resyncable msgpack log.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import stat
import struct
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import msgpack
import numpy as np

from avatar_bridge import __version__

from avatar_bridge.bus import wire
from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.types import FaceState

FILE_MAGIC = b"\x89ABTAKE\n"      # like PNG's: a high byte and a newline catch text-mode mangling
RECORD_MARK = b"\xfeABR"          # 0xfe never starts a msgpack map, so a payload rarely mimics it
FORMAT_VERSION = 1
KIND_HEADER, KIND_FRAME, KIND_END = b"H", b"F", b"E"
_RECORD_HEAD = struct.Struct("<4scII")   # mark, kind, length, crc
RECORD_OVERHEAD = _RECORD_HEAD.size      # 13 bytes
# A face record is ~430 bytes; anything claiming more than this is a damaged length field.
MAX_PAYLOAD = 1 << 20
TAKE_SUFFIX = ".abr"


class TakeError(RuntimeError):
    """A take that cannot be written or read as asked; the text names the file, the damage and what to do."""


@dataclass(frozen=True)
class TakeHeader:
    """What a take says about itself: written once, first, before any frame."""

    fps: float = 60.0                  # nominal frame rate; the frames' own times are authoritative
    source: str = ""                   # what produced the frames: "bus tcp://...", a video path, ...
    start_time: str = ""               # ISO 8601 wall-clock time with UTC offset, when writing began
    profile: dict[str, Any] | None = None   # the calibration profile in force (profile TOML as a map), if known
    names: tuple[str, ...] = ARKIT_BLENDSHAPES
    version: int = FORMAT_VERSION
    wire_schema: int = wire.SCHEMA_VERSION
    writer: str = f"avatar-bridge {__version__}"
    extra: dict[str, Any] = field(default_factory=dict)   # keys this version does not know, kept as read

    def to_map(self) -> dict[str, Any]:
        return {"format": "avatar-bridge take", "version": self.version, "wire_schema": self.wire_schema,
                "names": list(self.names), "fps": float(self.fps), "source": self.source,
                "start_time": self.start_time, "profile": self.profile, "writer": self.writer, **self.extra}

    @staticmethod
    def from_map(m: dict[str, Any]) -> "TakeHeader":
        known = {"format", "version", "wire_schema", "names", "fps", "source", "start_time", "profile", "writer"}
        return TakeHeader(fps=float(m.get("fps") or 0.0), source=str(m.get("source", "")),
                          start_time=str(m.get("start_time", "")), profile=m.get("profile"),
                          names=tuple(m.get("names") or ARKIT_BLENDSHAPES), version=int(m.get("version", 0)),
                          wire_schema=int(m.get("wire_schema", wire.SCHEMA_VERSION)),
                          writer=str(m.get("writer", "")), extra={k: v for k, v in m.items() if k not in known})


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def profile_to_header(profile: Any) -> dict[str, Any] | None:
    """The header's form of a calibration profile (``profile.Profile``): its TOML map, or None."""
    return None if profile is None else profile.to_toml_dict()


def encode_record(kind: bytes, payload: bytes) -> bytes:
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length, zlib.crc32(kind)))
    return RECORD_MARK + kind + length + struct.pack("<I", crc) + payload


def encode_frame_payload(message: bytes, t: float) -> bytes:
    return msgpack.packb({"rt": float(t), "msg": bytes(message)}, use_bin_type=True)


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeWriterConfig:
    # A kill -9 loses at most the frames of the last flush_interval_s (they are still in our buffer);
    # a power cut loses at most fsync_interval_s. A flush is one write(2) of whole records, so a
    # killed writer leaves the file ending on a record boundary.
    flush_interval_s: float = 0.1
    fsync_interval_s: float = 1.0
    overwrite: bool = False            # refuse to replace an existing take unless asked


def _open_regular_file(path: Path, overwrite: bool) -> int:
    """Open ``path`` for writing without following a symlink, without blocking on a FIFO or device, and only
    if it is (or becomes) a regular file; an existing one is emptied only with ``overwrite``."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | (0 if overwrite else os.O_EXCL))
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise TakeError(f"{path} already exists; pick another name or pass --overwrite") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TakeError(f"{path} is a symbolic link; takes are only written to regular files") from None
        if exc.errno == errno.ENXIO:
            raise TakeError(f"{path} is a FIFO or socket; takes are only written to regular files") from None
        raise TakeError(f"cannot create {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TakeError(f"{path} is not a regular file (a device, FIFO or folder); takes are only written to "
                            "regular files")
        if overwrite:
            os.ftruncate(fd, 0)   # only now: truncating on open would have emptied a device or FIFO target
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise TakeError(f"cannot replace {path}: {exc.strerror}") from None
        raise
    return fd


class TakeWriter:
    """Appends frames to a new take file; call ``maybe_flush`` when idle and ``close`` at the end."""

    def __init__(self, path: str | Path, header: TakeHeader, config: TakeWriterConfig = TakeWriterConfig()) -> None:
        self.path = Path(path)
        self.config = config
        self._fd = _open_regular_file(self.path, config.overwrite)
        try:
            self.header = replace(header, start_time=header.start_time or now_iso())
            self._buf = bytearray(FILE_MAGIC)
            self._buf += encode_record(KIND_HEADER, msgpack.packb(self.header.to_map(), use_bin_type=True))
            self.frames = 0
            self.bytes_written = 0
            self.first_t: float | None = None
            self.last_t: float | None = None
            self._last_flush = self._last_fsync = time.monotonic()
            self.flush(fsync=True)
        except OSError as exc:
            # A first write that fails (a full disk, a file size limit) must not leak the descriptor
            # or leave an empty file that later looks like a take.
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise TakeError(f"cannot write {self.path}: {exc.strerror}") from None

    def write_message(self, message: bytes, t: float) -> None:
        """Append one bus ``face`` payload (already validated) received at take time ``t`` seconds."""
        if self._fd < 0:
            raise TakeError(f"{self.path} is closed")
        self._buf += encode_record(KIND_FRAME, encode_frame_payload(message, t))
        self.frames += 1
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        self.maybe_flush()

    def write(self, state: FaceState, seq: int, t: float | None = None) -> None:
        """Append a FaceState as a schema-v1 message with ``seq``; its time is ``t`` or its t_capture."""
        self.write_message(wire.encode_face(state, seq), state.t_capture if t is None else t)

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.config.flush_interval_s:
            self.flush(fsync=now - self._last_fsync >= self.config.fsync_interval_s)

    def flush(self, fsync: bool = False) -> None:
        view = memoryview(self._buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(self._buf)
        self._buf = bytearray()
        self._last_flush = time.monotonic()
        if fsync:
            os.fsync(self._fd)
            self._last_fsync = self._last_flush

    @property
    def duration_s(self) -> float:
        return 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Write the end record (frames, duration and ``summary``), flush, fsync and close. Idempotent."""
        if self._fd < 0:
            return
        end = {"frames": self.frames, "duration_s": self.duration_s, "end_time": now_iso(), **(summary or {})}
        self._buf += encode_record(KIND_END, msgpack.packb(end, use_bin_type=True))
        try:
            self.flush(fsync=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TakeWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- reading -------------------------------------------------------------------------------------


class TakeFrame(NamedTuple):
    """One recorded frame: bus ``seq``, the FaceState as published, and take time ``t`` in seconds
    (float64; the recorder's receive clock, or media time for ``process``)."""

    seq: int
    state: FaceState
    t: float


@dataclass(frozen=True)
class TakeDamage:
    """Bytes ``start``..``end`` (exclusive) could not be read; ``after_frame`` good frames came before."""

    kind: str            # "truncated" (the file stops inside a record) or "corrupted"
    start: int
    end: int
    after_frame: int


@dataclass
class Take:
    """A whole take in memory: header, frames in file order, the end summary (None if the writer
    never closed it, e.g. killed) and any damage skipped while salvaging."""

    path: Path
    header: TakeHeader
    frames: list[TakeFrame]
    end: dict[str, Any] | None = None
    damage: list[TakeDamage] = field(default_factory=list)
    size: int = 0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def complete(self) -> bool:
        return self.end is not None and not self.damage

    @property
    def times(self) -> np.ndarray:
        return np.array([f.t for f in self.frames], np.float64)

    @property
    def seqs(self) -> np.ndarray:
        return np.array([f.seq for f in self.frames], np.int64)

    @property
    def blendshapes(self) -> np.ndarray:
        """(T, 52) float32 in ARKit order."""
        if not self.frames:
            return np.zeros((0, len(ARKIT_BLENDSHAPES)), np.float32)
        return np.stack([np.asarray(f.state.blendshapes, np.float32) for f in self.frames])

    @property
    def present(self) -> np.ndarray:
        return np.array([f.state.face_present for f in self.frames], bool)

    @property
    def duration_s(self) -> float:
        return float(self.frames[-1].t - self.frames[0].t) if len(self.frames) > 1 else 0.0

    def seq_gaps(self) -> int:
        """Messages missing between consecutive recorded seqs (a seq that goes back is a restart, not a gap)."""
        s = self.seqs
        d = np.diff(s)
        return int(np.sum(d[d > 1] - 1)) if len(s) > 1 else 0


def _frame_word(n: int) -> str:
    return "no frame" if n == 0 else ("frame 0" if n == 1 else f"frames 0-{n - 1}")


def describe_damage(path: Path, take: Take) -> str:
    """The one-line TakeError text for a damaged take."""
    first = take.damage[0]
    name = path.name
    total = len(take.frames)
    if first.kind == "truncated":
        msg = (f"{name} is truncated after frame {first.after_frame} (at byte {first.start} of {take.size}); "
               f"{_frame_word(first.after_frame)} {'was' if first.after_frame <= 1 else 'were'} read")
    else:
        after = total - first.after_frame
        msg = (f"{name} is corrupted from byte {first.start} to {first.end} of {take.size} (after frame "
               f"{first.after_frame}): {_frame_word(first.after_frame)} read before the damage, "
               f"{after} good frame{'s' if after != 1 else ''} after it")
    if len(take.damage) > 1:
        msg += f"; {len(take.damage) - 1} more damaged region{'s' if len(take.damage) > 2 else ''} further on"
    return msg + f". Re-run with --salvage to keep the {total} good frame{'s' if total != 1 else ''}"


def _parse_record(data: bytes, pos: int) -> tuple[str, bytes, bytes, int]:
    """At ``pos``: ("ok", kind, payload, next_pos), ("short", ...) if the file ends inside it, or ("bad", ...)."""
    size = len(data)
    if size - pos < RECORD_OVERHEAD:
        return ("short" if data[pos:pos + 4] == RECORD_MARK[:max(0, min(4, size - pos))] else "bad"), b"", b"", pos
    mark, kind, length, crc = _RECORD_HEAD.unpack_from(data, pos)
    # Any capital letter is a kind (readers skip kinds they do not know, so the format can grow).
    if mark != RECORD_MARK or not b"A" <= kind <= b"Z" or length > MAX_PAYLOAD:
        return "bad", b"", b"", pos
    end = pos + RECORD_OVERHEAD + length
    if end > size:
        return "short", b"", b"", pos
    payload = data[pos + RECORD_OVERHEAD:end]
    if zlib.crc32(payload, zlib.crc32(data[pos + 5:pos + 9], zlib.crc32(kind))) != crc:
        return "bad", b"", b"", pos
    return "ok", kind, payload, end


def _decode_frame(payload: bytes) -> TakeFrame:
    m = msgpack.unpackb(payload, raw=False)
    if not isinstance(m, dict) or not isinstance(m.get("msg"), bytes):
        raise wire.WireError("frame record is not a map with a 'msg' payload")
    seq, state = wire.decode_face(m["msg"])
    t = m.get("rt")
    return TakeFrame(seq, state, float(t) if isinstance(t, (int, float)) else state.t_capture)


def _resync(data: bytes, pos: int) -> int | None:
    """The offset of the next whole, checksummed record after ``pos``, or None."""
    i = data.find(RECORD_MARK, pos + 1)
    while i >= 0:
        if _parse_record(data, i)[0] == "ok":
            return i
        i = data.find(RECORD_MARK, i + 1)
    return None


def _first_bytes(data: bytes) -> str:
    """A file's first bytes as a person reads them: text when they are text, else hex (never b'...')."""
    head = data[:12]
    try:
        text = head.decode("utf-8")
        if text.isprintable():
            return f'the text "{text}"'
    except UnicodeDecodeError:
        pass
    return f"the bytes {head.hex(' ')}"


def parse_take(path: str | Path, data: bytes) -> Take:
    """Parse take bytes, skipping damage (recorded in ``Take.damage``); raises TakeError only when the
    bytes are not a take at all or the header is unusable."""
    path = Path(path)
    if len(data) < len(FILE_MAGIC) or data[:len(FILE_MAGIC)] != FILE_MAGIC:
        if FILE_MAGIC.startswith(data):
            raise TakeError(f"{path.name} is empty or cut off inside its first {len(FILE_MAGIC)} bytes; "
                            "nothing was recorded in it")
        raise TakeError(f"{path.name} is not an avatar-bridge take (it begins with {_first_bytes(data)}, not a "
                        "take's header); a Live Link Face CSV is read by its .csv name, e.g. `avatar-bridge convert`")
    take = Take(path, TakeHeader(), [], size=len(data))
    pos = len(FILE_MAGIC)
    header_seen = False
    while pos < len(data):
        status, kind, payload, nxt = _parse_record(data, pos)
        if status == "ok":
            try:
                if kind == KIND_FRAME:
                    take.frames.append(_decode_frame(payload))
                elif kind == KIND_HEADER and not header_seen:
                    take.header = TakeHeader.from_map(msgpack.unpackb(payload, raw=False))
                    header_seen = True
                    if take.header.version > FORMAT_VERSION:
                        raise TakeError(f"{path.name} is take format v{take.header.version}; this avatar-bridge "
                                        f"reads v{FORMAT_VERSION}. Upgrade avatar-bridge to read it")
                    if tuple(take.header.names) != ARKIT_BLENDSHAPES:
                        raise TakeError(f"{path.name} uses a different blendshape name table than this "
                                        "avatar-bridge; it cannot be read safely")
                elif kind == KIND_END:
                    take.end = msgpack.unpackb(payload, raw=False)
                pos = nxt   # a kind this version does not know is skipped whole
                continue
            except (wire.WireError, msgpack.UnpackException, ValueError, TypeError):
                status = "bad"   # checksummed but not decodable: a bug or a foreign writer; skip it
                nxt = pos + RECORD_OVERHEAD + len(payload)
        resume = _resync(data, pos)
        if status == "short" and resume is None:
            take.damage.append(TakeDamage("truncated", pos, len(data), len(take.frames)))
            break
        end = len(data) if resume is None else resume
        take.damage.append(TakeDamage("corrupted", pos, end, len(take.frames)))
        if resume is None:
            break
        pos = resume
    if not header_seen and not take.damage:  # magic but no header: nothing after the magic was kept
        take.damage.append(TakeDamage("truncated", len(FILE_MAGIC), len(data), 0))
    return take


def read_take(path: str | Path, salvage: bool = False) -> Take:
    """Read a whole take. Damage raises TakeError saying where it starts and what was readable,
    unless ``salvage``: then the good records are kept and the damage is listed in ``Take.damage``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TakeError(f"no such take: {path}") from None
    except OSError as exc:
        raise TakeError(f"cannot read {path}: {exc.strerror}") from None
    take = parse_take(path, data)
    if take.damage and not salvage:
        raise TakeError(describe_damage(path, take))
    return take


class TakeReader:
    """Iterates a take's frames as TakeFrame(seq, state, t); ``header`` and ``take`` are available
    once opened. Opening checks the whole file, so damage is reported before the first frame."""

    def __init__(self, path: str | Path, salvage: bool = False) -> None:
        self.take = read_take(path, salvage)
        self.header = self.take.header

    def __iter__(self) -> Iterator[TakeFrame]:
        return iter(self.take.frames)

    def __len__(self) -> int:
        return len(self.take.frames)


def write_take(path: str | Path, frames: list[TakeFrame], header: TakeHeader,
               summary: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``frames`` (e.g. salvaged or imported ones) to a new take, re-encoding each state."""
    with TakeWriter(path, header, TakeWriterConfig(overwrite=overwrite)) as writer:
        for f in frames:
            writer.write(f.state, f.seq, f.t)
        writer.close(summary)
    return Path(path)
