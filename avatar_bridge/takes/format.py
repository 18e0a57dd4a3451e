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
import math
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
_LENGTH = struct.Struct("<I")
# A face record is ~430 bytes; anything claiming more than this is a damaged length field.
MAX_PAYLOAD = 1 << 20
# Bounds on what a record may hold, so a crafted but checksummed take is damage, not a crash or a hang.
MAX_TIME_S = 1e10                  # take times: a monotonic clock or media time; 300 years is not a take
MAX_FPS = 10000.0
MAX_TEXT = 4096                    # header texts (a source path, a time, the writer)
_INT64 = 1 << 63
_FLOAT32_MAX = float(np.finfo(np.float32).max)   # the wire packs floats as float32: beyond this is inf
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
    def from_map(m: Any) -> "TakeHeader":
        """The header a take's ``H`` record holds; ValueError naming the field when a field has the wrong
        type (a CRC only says the bytes are as written, not that the writer was ours)."""
        if not isinstance(m, dict):
            raise ValueError(f"the header is {_kind_of(m)}, not a map")
        known = {"format", "version", "wire_schema", "names", "fps", "source", "start_time", "profile", "writer"}
        fps = m.get("fps") or 0.0
        if not _is_number(fps) or not 0.0 <= fps <= MAX_FPS:
            raise ValueError(f"header field 'fps' is {_shown(fps)}, not a frame rate 0..{MAX_FPS:g}")
        for key in ("version", "wire_schema"):
            if key in m and not (_is_int(m[key]) and 0 <= m[key] < 1 << 31):
                raise ValueError(f"header field {key!r} is {_shown(m[key])}, not a version number")
        for key in ("format", "source", "start_time", "writer"):
            if key in m and not (isinstance(m[key], str) and len(m[key]) <= MAX_TEXT):
                raise ValueError(f"header field {key!r} is {_shown(m[key])}, not a text of at most {MAX_TEXT} "
                                 "characters")
        names = m.get("names") or ARKIT_BLENDSHAPES
        if not isinstance(names, (list, tuple)) or len(names) > 1024 or not all(isinstance(n, str) for n in names):
            raise ValueError(f"header field 'names' is {_shown(names)}, not a list of blendshape names")
        _check_profile(m.get("profile"))
        return TakeHeader(fps=float(fps), source=m.get("source", ""), start_time=m.get("start_time", ""),
                          profile=m.get("profile"), names=tuple(names), version=m.get("version", 0),
                          wire_schema=m.get("wire_schema", wire.SCHEMA_VERSION), writer=m.get("writer", ""),
                          extra={k: v for k, v in m.items() if k not in known})


def _kind_of(value: Any) -> str:
    names = {dict: "a map", list: "a list", str: "a text", bytes: "bytes", int: "an integer", float: "a number",
             bool: "a boolean", type(None): "nil"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A value for an error line: short, whatever the file holds."""
    text = repr(value)
    text = text[:40] + "..." if len(text) > 40 else text
    return text if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{_kind_of(value)} {text}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_profile(profile: Any) -> None:
    # inspect reads name, shapes and filter; anything else in the map is the profile's own business.
    if profile is None:
        return
    if not isinstance(profile, dict):
        raise ValueError(f"header field 'profile' is {_shown(profile)}, not a map or nil")
    for key, kind, word in (("name", str, "a text"), ("shapes", dict, "a map"), ("filter", dict, "a map")):
        if key in profile and not isinstance(profile[key], kind):
            raise ValueError(f"header field 'profile.{key}' is {_shown(profile[key])}, not {word}")


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
    """Bytes ``start``..``end`` (exclusive) could not be read; ``after_frame`` good frames came before.
    For a Live Link Face CSV ``start``/``end`` are line numbers."""

    kind: str            # "truncated" (the file stops inside a record), "corrupted" (no valid record),
    start: int           # "invalid" (checksummed records holding what no take holds: ``reason`` says what),
    end: int             # "row" (a CSV row with a malformed cell)
    after_frame: int
    reason: str = ""


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
        # Python ints: seqs are any of 0..2**63-1, so an int64 difference or sum could wrap.
        seqs = [f.seq for f in self.frames]
        return sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if b - a > 1)


def _frame_word(n: int) -> str:
    return "no frame" if n == 0 else ("frame 0" if n == 1 else f"frames 0-{n - 1}")


def describe_damage(path: Path, take: Take) -> str:
    """The one-line TakeError text for a damaged take."""
    first = take.damage[0]
    name = path.name
    total = len(take.frames)
    after = total - first.after_frame
    read = (f"{_frame_word(first.after_frame)} read before the damage, "
            f"{after} good frame{'s' if after != 1 else ''} after it")
    if first.kind == "truncated":
        msg = (f"{name} is truncated after frame {first.after_frame} (at byte {first.start} of {take.size}); "
               f"{_frame_word(first.after_frame)} {'was' if first.after_frame <= 1 else 'were'} read")
    elif first.kind == "invalid":
        msg = (f"{name} holds invalid data at bytes {first.start}-{first.end} of {take.size} (after frame "
               f"{first.after_frame}): {first.reason}; {read}")
    else:
        msg = (f"{name} is corrupted from byte {first.start} to {first.end} of {take.size} (after frame "
               f"{first.after_frame}): {read}")
    if len(take.damage) > 1:
        msg += f"; {len(take.damage) - 1} more damaged region{'s' if len(take.damage) > 2 else ''} further on"
    return msg + f". Re-run with --salvage to keep the {total} good frame{'s' if total != 1 else ''}"


class _Scanner:
    """Finds checksummed records in a take's bytes, in time linear in the file's size whatever the bytes.

    A reader that trusts each mark's declared length can be made to checksum the same bytes over and
    over (a file of record marks 13 bytes apart, each declaring 1 MiB: 37 s per MiB). So: a length
    past the end of the file is damage at once, and inside bytes that a record which failed its
    checksum already claimed, a candidate whose bytes hold another mark is not checksummed at all.
    Every checksummed range is then either fresh or free of other marks, so no byte is checksummed
    more than about twice. The cost is that a real record holding the 4-byte mark by chance (about
    one in 10 million) is lost when it lies inside such damage.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.claimed = 0        # bytes before this offset lie inside a record whose checksum failed
        self.checked_bytes = 0  # payload bytes checksummed so far (the reader's work; tests bound it)
        self._ok: tuple[int, tuple[str, bytes, bytes, int]] | None = None   # the last record resync found

    def record(self, pos: int, next_mark: int | None = None) -> tuple[str, bytes, bytes, int]:
        """At ``pos``: ("ok", kind, payload, next_pos), ("short", ...) if the file ends inside it, or
        ("bad", ...). ``next_mark``, when known, is the offset of the next mark after ``pos`` (-1: none)."""
        if self._ok is not None and self._ok[0] == pos:
            return self._ok[1]
        data, size = self.data, len(self.data)
        if size - pos < RECORD_OVERHEAD:
            return ("short" if data[pos:pos + 4] == RECORD_MARK[:max(0, min(4, size - pos))] else "bad"), b"", b"", pos
        mark, kind, length, crc = _RECORD_HEAD.unpack_from(data, pos)
        # Any capital letter is a kind (readers skip kinds they do not know, so the format can grow).
        if mark != RECORD_MARK or not b"A" <= kind <= b"Z" or length > MAX_PAYLOAD:
            return "bad", b"", b"", pos
        end = pos + RECORD_OVERHEAD + length
        if end > size:
            return "short", b"", b"", pos
        if pos < self.claimed:
            if next_mark is None:
                next_mark = data.find(RECORD_MARK, pos + 1, end)
            if 0 <= next_mark and next_mark + len(RECORD_MARK) <= end:
                return "bad", b"", b"", pos
        self.checked_bytes += length
        payload = data[pos + RECORD_OVERHEAD:end]
        if zlib.crc32(payload, zlib.crc32(data[pos + 5:pos + 9], zlib.crc32(kind))) != crc:
            self.claimed = max(self.claimed, end)
            return "bad", b"", b"", pos
        return "ok", kind, payload, end

    def resync(self, pos: int) -> int | None:
        """The offset of the next whole, checksummed record after ``pos``, or None."""
        find, size, length_at = self.data.find, len(self.data) - RECORD_OVERHEAD, _LENGTH.unpack_from
        i = find(RECORD_MARK, pos + 1)
        while i >= 0:
            nxt = find(RECORD_MARK, i + 1)
            # The common case in a flood of marks, decided here without a call: a record that would run
            # past the end of the file, or (inside claimed bytes) that holds the next mark.
            if i <= size:
                end = i + RECORD_OVERHEAD + length_at(self.data, i + 5)[0]
                if end > len(self.data) or (i < self.claimed and 0 <= nxt and nxt + 4 <= end):
                    i = nxt
                    continue
            result = self.record(i, nxt)
            if result[0] == "ok":
                self._ok = (i, result)
                return i
            i = nxt
        return None


class _Invalid(ValueError):
    """A checksummed record whose content no take holds; the text says what (for TakeDamage.reason)."""


def _check_floats(values: Any, what: str) -> None:
    # The wire checks these are finite Python floats; as float32 (how the bus and adapters send them)
    # anything beyond 3.4e38 is inf.
    for x in values:
        if abs(x) > _FLOAT32_MAX:
            raise _Invalid(f"frame {what} value {x!r} is beyond float32")


def _decode_frame(payload: bytes) -> TakeFrame:
    m = msgpack.unpackb(payload, raw=False)
    if not isinstance(m, dict) or not isinstance(m.get("msg"), bytes):
        raise _Invalid(f"a frame record holds {_kind_of(m)}, not a map with a 'msg' payload")
    msg = wire.decode_face_message(m["msg"])
    seq = msg["seq"]
    if not 0 <= seq < _INT64:
        raise _Invalid(f"frame seq {seq} is outside 0..2**63-1")
    frame = msg.get("frame", -1)
    if not _is_int(frame) or not -_INT64 <= frame < _INT64:
        raise _Invalid(f"frame field 'frame' is {_shown(frame)}, not a 64-bit frame index")
    for key in ("t", "tp", "conf"):
        if key in msg and not _is_number(msg[key]):
            raise _Invalid(f"frame field {key!r} is {_shown(msg[key])}, not a finite number")
    _check_floats(msg["bs"], "bs")
    for part, keys in (("head", ("q", "p")), ("gaze", ("l", "r"))):
        for key in keys:
            _check_floats(msg[part][key], f"{part}.{key}")
    state = wire.message_to_face(msg)
    t = m.get("rt", state.t_capture)
    if not _is_number(t) or abs(t) > MAX_TIME_S:
        raise _Invalid(f"frame time {_shown(t)} is not a take time (a finite number of seconds up to {MAX_TIME_S:g})")
    return TakeFrame(seq, state, float(t))


def _decode_end(payload: bytes) -> dict[str, Any]:
    end = msgpack.unpackb(payload, raw=False)
    if not isinstance(end, dict):
        raise _Invalid(f"the end record is {_kind_of(end)}, not a map")
    if "incomplete" in end and not (isinstance(end["incomplete"], str) and len(end["incomplete"]) <= MAX_TEXT):
        raise _Invalid(f"end field 'incomplete' is {_shown(end['incomplete'])}, not a text")
    return end


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


def _add_damage(take: Take, damage: TakeDamage) -> None:
    """Record damage, merged into the previous entry when it continues it (a run of bad frames is one region)."""
    last = take.damage[-1] if take.damage else None
    if last is not None and last.end == damage.start and last.kind == damage.kind \
            and last.after_frame == damage.after_frame:
        take.damage[-1] = replace(last, end=damage.end)
    else:
        take.damage.append(damage)


def parse_take(path: str | Path, data: bytes) -> Take:
    """Parse take bytes, skipping damage (recorded in ``Take.damage``); raises TakeError only when the
    bytes are not a take at all or the header says it cannot be read by this version.

    A record whose checksum holds but whose content is not what a take holds (a header that is a list,
    a NaN frame time, a seq past 2**63) is "invalid" damage: skipped like corruption, with the reason."""
    path = Path(path)
    if len(data) < len(FILE_MAGIC) or data[:len(FILE_MAGIC)] != FILE_MAGIC:
        if FILE_MAGIC.startswith(data):
            raise TakeError(f"{path.name} is empty or cut off inside its first {len(FILE_MAGIC)} bytes; "
                            "nothing was recorded in it")
        raise TakeError(f"{path.name} is not an avatar-bridge take (it begins with {_first_bytes(data)}, not a "
                        "take's header); a Live Link Face CSV is read by its .csv name, e.g. `avatar-bridge convert`")
    take = Take(path, TakeHeader(), [], size=len(data))
    scanner = _Scanner(data)
    pos = len(FILE_MAGIC)
    header_seen = False
    while pos < len(data):
        status, kind, payload, nxt = scanner.record(pos)
        if status == "ok":
            try:
                if kind == KIND_FRAME:
                    take.frames.append(_decode_frame(payload))
                elif kind == KIND_HEADER and not header_seen:
                    header_seen = True
                    try:
                        take.header = TakeHeader.from_map(msgpack.unpackb(payload, raw=False))
                    except ValueError as exc:
                        raise _Invalid(f"its header is not usable: {exc}") from None
                    if take.header.version > FORMAT_VERSION:
                        raise TakeError(f"{path.name} is take format v{take.header.version}; this avatar-bridge "
                                        f"reads v{FORMAT_VERSION}. Upgrade avatar-bridge to read it")
                    if tuple(take.header.names) != ARKIT_BLENDSHAPES:
                        raise TakeError(f"{path.name} uses a different blendshape name table than this "
                                        "avatar-bridge; it cannot be read safely")
                elif kind == KIND_END:
                    take.end = _decode_end(payload)
            except (_Invalid, wire.WireError, msgpack.UnpackException, ValueError, TypeError) as exc:
                # Checksummed, so its extent is right: only this record is skipped.
                reason = str(exc) if isinstance(exc, (_Invalid, wire.WireError)) else f"undecodable record ({exc})"
                _add_damage(take, TakeDamage("invalid", pos, nxt, len(take.frames), reason[:200]))
            pos = nxt   # a kind this version does not know is skipped whole
            continue
        resume = scanner.resync(pos)
        if status == "short" and resume is None:
            _add_damage(take, TakeDamage("truncated", pos, len(data), len(take.frames)))
            break
        end = len(data) if resume is None else resume
        _add_damage(take, TakeDamage("corrupted", pos, end, len(take.frames)))
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
