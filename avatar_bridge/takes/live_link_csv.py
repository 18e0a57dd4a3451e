"""Live Link Face CSV: the file Epic's iPhone app exports per take, read and written here (docs/takes.md).

Format, as read by Epic's own importer (the LiveLinkFaceImporter plugin, ``LiveLinkFaceImporterFactory.cpp``)
and as the app's exported header reads in public tools that load it:

* a header row ``Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
  LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll`` (``LLF_HEADER``:
  PascalCase names, the app's column order, which lists JawRight before JawLeft and MouthRight
  before MouthLeft);
* one row per frame: ``Timecode`` as ``hh:mm:ss:ff.mmm`` (time of day; ``ff.mmm`` are fractional
  frames at the app's 30 or 60 fps; the importer infers 60 when any frame number exceeds 30),
  ``BlendShapeCount`` = 61, then the 61 values; values are read by column name, never position;
* the nine angles are in Unreal's ARKit units, degrees / 180 (``adapters.live_link_face.face_angles``).

avatar-bridge may append ``FaceDetected`` (1/0) and ``Confidence`` (0..1) after the app's columns,
so a frame with no face keeps its row and says so; Epic's importer reads extra columns as extra
curves, and ``tracking_columns=False`` writes the app's header alone.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from avatar_bridge.adapters.live_link_face import ANGLE_NAMES, face_angles
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from avatar_bridge.takes.format import Take, TakeDamage, TakeFrame, TakeHeader
from avatar_bridge.types import FaceState


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


def _app_order() -> tuple[str, ...]:
    # The app lists the two jaw and mouth direction shapes Right-first; everything else is ARKit order.
    names = [_pascal(n) for n in ARKIT_BLENDSHAPES]
    for left, right in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        i, j = names.index(left), names.index(right)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


LLF_SHAPE_COLUMNS: tuple[str, ...] = _app_order()
LLF_ANGLE_COLUMNS: tuple[str, ...] = tuple(ANGLE_NAMES)
LLF_HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *LLF_SHAPE_COLUMNS, *LLF_ANGLE_COLUMNS)
BLENDSHAPE_COUNT = 61
TRACKING_COLUMNS: tuple[str, ...] = ("FaceDetected", "Confidence")
_SHAPE_BY_LOWER = {n.lower(): i for i, n in enumerate(ARKIT_BLENDSHAPES)}


class LiveLinkCsvError(ValueError):
    """A CSV that is not in Live Link Face's layout; the text names the row or column."""


# --- timecode ------------------------------------------------------------------------------------


def format_timecode(seconds: float, fps: int) -> str:
    """``hh:mm:ss:ff.mmm`` for ``seconds`` since midnight, frames counted at ``fps`` (wraps at 24 h)."""
    total_ms = round((seconds % 86400.0) * 1000.0 * fps)   # in 1/1000 frame units, so rounding cannot carry wrong
    frames_ms = total_ms % (1000 * fps)
    whole = total_ms // (1000 * fps)
    h, rest = divmod(int(whole), 3600)
    m, s = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}:{frames_ms / 1000:06.3f}"


_TIMECODE = re.compile(r"^\s*(\d{1,2}):(\d{1,2}):(\d{1,2}):(\d{1,3}(?:\.\d+)?)\s*$", re.ASCII)


def parse_timecode(text: str) -> tuple[int, int, int, float]:
    """(hours, minutes, seconds, fractional frames) of ``hh:mm:ss:ff[.mmm]``; LiveLinkCsvError otherwise.
    Plain digits only, so no sign, exponent, nan or inf gets in; hours < 24 (a time of day)."""
    m = _TIMECODE.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3)) > 60:
        raise LiveLinkCsvError(f"malformed timecode {_cell(text)}; expected a time of day hh:mm:ss:ff.mmm")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))


def _cell(text: str) -> str:
    """A cell as an error line shows it: quoted, and short whatever the file holds."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def infer_timecode_fps(frame_numbers: Iterable[float]) -> int:
    """Epic's rule: the app writes 30 or 60 fps timecode, and only 60 fps has frame numbers above 30."""
    return 60 if any(f > 30.0 for f in frame_numbers) else 30


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveLinkCsvConfig:
    timecode_fps: int = 60          # the app's default capture rate; 30 is its other choice
    tracking_columns: bool = True   # append FaceDetected, Confidence (see module doc)
    mirrored: bool = False          # Unreal's "face mirrored" angle signs (as the UDP adapter)


def _seconds_of_day(start: _dt.datetime) -> float:
    return start.hour * 3600 + start.minute * 60 + start.second + start.microsecond / 1e6


def _float(v: float) -> str:
    return format(float(np.float32(v)), ".9g")   # 9 significant digits round-trip any float32 exactly


class LiveLinkCsvWriter:
    """Writes rows one frame at a time (``process`` streams into it), flushing every ``flush_every`` rows."""

    def __init__(self, stream: TextIO, start: _dt.datetime, config: LiveLinkCsvConfig = LiveLinkCsvConfig(),
                 flush_every: int = 30) -> None:
        self.config = config
        self._stream = stream
        self._writer = csv.writer(stream, lineterminator="\n")
        self._day_s = _seconds_of_day(start)
        self._flush_every = flush_every
        self.rows = 0
        header = list(LLF_HEADER) + (list(TRACKING_COLUMNS) if config.tracking_columns else [])
        self._writer.writerow(header)

    def write(self, state: FaceState, t: float) -> None:
        """One row for ``state`` at ``t`` seconds after the take's start."""
        bs = np.asarray(state.blendshapes, np.float32)
        row = [format_timecode(self._day_s + t, self.config.timecode_fps), str(BLENDSHAPE_COUNT)]
        row += [_float(bs[INDEX[n[0].lower() + n[1:]]]) for n in LLF_SHAPE_COLUMNS]
        row += [_float(a) for a in face_angles(state, self.config.mirrored)]
        if self.config.tracking_columns:
            row += ["1" if state.face_present else "0", _float(state.confidence)]
        self._writer.writerow(row)
        self.rows += 1
        if self.rows % self._flush_every == 0:
            self._stream.flush()


def _start_datetime(header: TakeHeader) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(header.start_time) if header.start_time else _dt.datetime.now()
    except ValueError:
        return _dt.datetime.now()


def export_csv(take: Take, path: str | Path, config: LiveLinkCsvConfig = LiveLinkCsvConfig()) -> int:
    """Write a take as a Live Link Face CSV (timecode = the take's start time of day + frame time); returns rows."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = LiveLinkCsvWriter(fh, _start_datetime(take.header), config)
        t0 = take.frames[0].t if take.frames else 0.0
        for f in take.frames:
            writer.write(f.state, f.t - t0)
    return writer.rows


# --- reading -------------------------------------------------------------------------------------


def _angles_to_pose(values: dict[str, float], mirrored: bool) -> tuple[tuple, tuple, tuple]:
    """The inverse of ``face_angles``: head quaternion and per-eye gaze (yaw, pitch) radians."""
    sign = 1.0 if mirrored else -1.0
    yaw = -sign * values.get("HeadYaw", 0.0) * math.pi
    pitch = values.get("HeadPitch", 0.0) * math.pi
    roll = sign * values.get("HeadRoll", 0.0) * math.pi
    q = from_yaw_pitch_roll(yaw, pitch, roll)
    gaze = []
    for eye in ("LeftEye", "RightEye"):
        gaze.append((-sign * values.get(eye + "Yaw", 0.0) * math.pi, -values.get(eye + "Pitch", 0.0) * math.pi))
    return q, gaze[0], gaze[1]


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _BadCell(ValueError):
    """A malformed row; the text (", column X: ..." or " has N columns ...") follows "line N"."""


def _number(row: list[str], col: int, header: list[str]) -> float:
    text = row[col]
    try:
        value = float(text)
    except ValueError:
        raise _BadCell(f", column {header[col]}: {_cell(text)} is not a number") from None
    # float() takes "nan", "inf" and "1e999"; as float32 (how takes and the bus hold values) 1e39 is inf too.
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise _BadCell(f", column {header[col]}: {_cell(text)} is not a finite number")
    return value


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every row. The whole file is decoded first, so an encoding error
    names its line; the csv module's own field limit (131,072 characters) stands against a cell
    that would hold a whole file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LiveLinkCsvError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LiveLinkCsvError(f"{path.name} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, "
                               f"character {column}; Live Link Face writes UTF-8, so re-save the file as UTF-8"
                               ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        detail = ("a cell is longer than the csv reader's limit of 131,072 characters; Live Link Face "
                  "cells are short numbers" if "field limit" in str(exc) else str(exc))
        raise LiveLinkCsvError(f"{path.name} line {reader.line_num}: {detail}") from None
    return rows


def import_csv(path: str | Path, timecode_fps: int | None = None, mirrored: bool = False,
               salvage: bool = False) -> Take:
    """Read a Live Link Face CSV into a Take (frame times from the timecodes, relative to the first row).

    Shape columns are matched by name, case-insensitively; missing ones read as 0. ``timecode_fps``
    None infers 30/60 as Epic's importer does. Without a FaceDetected column every row has a face.
    A malformed cell (not a number, nan, inf, a bad timecode) is a LiveLinkCsvError naming its line
    and column; with ``salvage`` its row is dropped instead and listed in ``Take.damage``.
    """
    path = Path(path)
    rows = _read_rows(path)
    if not rows or len(rows[0][1]) < 3 or rows[0][1][0].strip() != "Timecode" \
            or rows[0][1][1].strip() != "BlendShapeCount":
        raise LiveLinkCsvError(f"{path.name} is not a Live Link Face CSV: its first row must start with "
                               "Timecode,BlendShapeCount")
    header = [h.strip() for h in rows[0][1]]
    shape_cols = [(c, _SHAPE_BY_LOWER[h.lower()]) for c, h in enumerate(header) if h.lower() in _SHAPE_BY_LOWER]
    if not shape_cols:
        raise LiveLinkCsvError(f"{path.name} has no ARKit blendshape columns (e.g. EyeBlinkLeft, JawOpen)")
    angle_cols = [(c, h) for c, h in enumerate(header) if h in LLF_ANGLE_COLUMNS]
    face_col = header.index("FaceDetected") if "FaceDetected" in header else None
    conf_col = header.index("Confidence") if "Confidence" in header else None
    parsed, dropped = [], []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(header):
                raise _BadCell(f" has {len(row)} columns, the header has {len(header)}")
            try:
                stamp = parse_timecode(row[0])
            except LiveLinkCsvError as exc:
                raise _BadCell(f", column Timecode: {exc}") from None
            bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
            for c, k in shape_cols:
                bs[k] = _number(row, c, header)
            angles = {h: _number(row, c, header) for c, h in angle_cols}
            present = True if face_col is None else row[face_col].strip() not in ("0", "false", "False")
            conf = _number(row, conf_col, header) if conf_col is not None else (1.0 if present else 0.0)
        except _BadCell as exc:
            if not salvage:
                raise LiveLinkCsvError(f"{path.name} line {line}{exc}; re-run with --salvage to drop "
                                       "such rows") from None
            dropped.append(TakeDamage("row", line, line, len(parsed), f"line {line}{exc}"))
            continue
        parsed.append((stamp, bs, angles, present, conf))
    stamps = [p[0] for p in parsed]
    fps = timecode_fps or infer_timecode_fps(s[3] for s in stamps)
    times = np.array([h * 3600 + m * 60 + s + f / fps for h, m, s, f in stamps], np.float64)
    if len(times):
        times = np.where(times < times[0] - 43200, times + 86400, times)   # a take across midnight
        times -= times[0]
    frames = []
    for i, ((_, bs, angles, present, conf), t) in enumerate(zip(parsed, times)):
        q, gl, gr = _angles_to_pose(angles, mirrored)
        state = FaceState(blendshapes=np.clip(bs, 0.0, 1.0), head_rotation=q, gaze_left=gl, gaze_right=gr,
                          confidence=float(np.clip(conf, 0.0, 1.0)), face_present=present, t_capture=float(t),
                          frame_index=i)
        frames.append(TakeFrame(i, state, float(t)))
    start = ""
    if stamps:
        h, m, s, f = stamps[0]
        day = _dt.datetime.fromtimestamp(path.stat().st_mtime).date()
        start = (_dt.datetime.combine(day, _dt.time(h % 24, m, min(s, 59))) + _dt.timedelta(seconds=f / fps)) \
            .astimezone().isoformat(timespec="milliseconds")
    take_header = TakeHeader(fps=float(fps), source=f"Live Link Face CSV {path.name}", start_time=start)
    return Take(path, take_header, frames, end={"frames": len(frames)}, damage=dropped, size=path.stat().st_size)
