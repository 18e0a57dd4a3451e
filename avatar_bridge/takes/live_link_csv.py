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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from avatar_bridge.adapters.live_link_face import ANGLE_NAMES, face_angles
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.conventions import from_yaw_pitch_roll
from avatar_bridge.takes.format import TakeFrame, TakeHeader, Take
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


def parse_timecode(text: str) -> tuple[int, int, int, float]:
    """(hours, minutes, seconds, fractional frames) of ``hh:mm:ss:ff[.mmm]``; LiveLinkCsvError otherwise."""
    parts = text.strip().split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        return int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])
    except ValueError:
        raise LiveLinkCsvError(f"malformed timecode {text!r}; expected hh:mm:ss:ff.mmm") from None


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


def import_csv(path: str | Path, timecode_fps: int | None = None, mirrored: bool = False) -> Take:
    """Read a Live Link Face CSV into a Take (frame times from the timecodes, relative to the first row).

    Shape columns are matched by name, case-insensitively; missing ones read as 0. ``timecode_fps``
    None infers 30/60 as Epic's importer does. Without a FaceDetected column every row has a face.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise LiveLinkCsvError(f"cannot read {path}: {exc.strerror}") from None
    if not rows or len(rows[0]) < 3 or rows[0][0].strip() != "Timecode" or rows[0][1].strip() != "BlendShapeCount":
        raise LiveLinkCsvError(f"{path.name} is not a Live Link Face CSV: its first row must start with "
                               "Timecode,BlendShapeCount")
    header = [h.strip() for h in rows[0]]
    shape_cols = [(c, _SHAPE_BY_LOWER[h.lower()]) for c, h in enumerate(header) if h.lower() in _SHAPE_BY_LOWER]
    if not shape_cols:
        raise LiveLinkCsvError(f"{path.name} has no ARKit blendshape columns (e.g. EyeBlinkLeft, JawOpen)")
    angle_cols = [(c, h) for c, h in enumerate(header) if h in LLF_ANGLE_COLUMNS]
    face_col = header.index("FaceDetected") if "FaceDetected" in header else None
    conf_col = header.index("Confidence") if "Confidence" in header else None
    data = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    stamps = []
    for n, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise LiveLinkCsvError(f"{path.name} line {n} has {len(row)} columns, the header has {len(header)}")
        try:
            stamps.append(parse_timecode(row[0]))
        except LiveLinkCsvError as exc:
            raise LiveLinkCsvError(f"{path.name} line {n}: {exc}") from None
    fps = timecode_fps or infer_timecode_fps(s[3] for s in stamps)
    times = np.array([h * 3600 + m * 60 + s + f / fps for h, m, s, f in stamps], np.float64)
    if len(times):
        times = np.where(times < times[0] - 43200, times + 86400, times)   # a take across midnight
        times -= times[0]
    frames = []
    for i, (row, t) in enumerate(zip(data, times)):
        try:
            bs = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
            for c, k in shape_cols:
                bs[k] = float(row[c])
            angles = {h: float(row[c]) for c, h in angle_cols}
            present = True if face_col is None else row[face_col].strip() not in ("0", "false", "False")
            conf = float(row[conf_col]) if conf_col is not None else (1.0 if present else 0.0)
        except ValueError as exc:
            raise LiveLinkCsvError(f"{path.name} line {i + 2}: {exc}") from None
        q, gl, gr = _angles_to_pose(angles, mirrored)
        state = FaceState(blendshapes=np.clip(bs, 0.0, 1.0), head_rotation=q, gaze_left=gl, gaze_right=gr,
                          confidence=conf, face_present=present, t_capture=float(t), frame_index=i)
        frames.append(TakeFrame(i, state, float(t)))
    start = ""
    if stamps:
        h, m, s, f = stamps[0]
        day = _dt.datetime.fromtimestamp(path.stat().st_mtime).date()
        start = (_dt.datetime.combine(day, _dt.time(h % 24, m, s)) + _dt.timedelta(seconds=f / fps)) \
            .astimezone().isoformat(timespec="milliseconds")
    take_header = TakeHeader(fps=float(fps), source=f"Live Link Face CSV {path.name}", start_time=start)
    return Take(path, take_header, frames, end={"frames": len(frames)}, size=path.stat().st_size)
