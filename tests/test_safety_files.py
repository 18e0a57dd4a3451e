"""Hostile files (issue 14, items 4-6): crafted takes whose checksums hold, malformed Live Link Face
CSVs and an image that declares 12000x12000 pixels each get one clear line (or a salvage), never a
traceback, a hang or a gigabyte of memory."""

from __future__ import annotations

import math
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from typer.testing import CliRunner

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.bus import wire
from avatar_bridge.cli import app
from avatar_bridge.takes import format as take_format
from avatar_bridge.takes.format import (FILE_MAGIC, KIND_END, KIND_FRAME, KIND_HEADER, MAX_PAYLOAD, RECORD_MARK,
                                        TakeError, TakeHeader, TakeWriter, encode_frame_payload, encode_record,
                                        parse_take, read_take)
from avatar_bridge.takes.live_link_csv import LLF_HEADER, LiveLinkCsvError, import_csv
from avatar_bridge.tracking.sources import SourceConfig, open_source
from avatar_bridge.types import FaceState

from helpers import cli, free_port, hermetic_env

FRAMES = 20
BAD_FRAME = 5            # the frame the crafted takes spoil


# --- crafted takes: the project's own writer, then records re-encoded so every checksum holds -----


def _state(i: int) -> FaceState:
    bs = np.full(len(ARKIT_BLENDSHAPES), 0.1, np.float32)
    bs[17] = 0.5 + 0.4 * math.sin(i / 3)    # jawOpen moves, so plot has something to draw
    return FaceState(blendshapes=bs, confidence=0.9, face_present=True, t_capture=100.0 + i / 60, frame_index=i)


def _records(data: bytes) -> list[tuple[bytes, bytes]]:
    """(kind, payload) of every record of a healthy take."""
    out, pos = [], len(FILE_MAGIC)
    while pos < len(data):
        kind = data[pos + 4:pos + 5]
        length = int.from_bytes(data[pos + 5:pos + 9], "little")
        out.append((kind, data[pos + 13:pos + 13 + length]))
        pos += 13 + length
    return out


def _healthy(path: Path) -> bytes:
    with TakeWriter(path, TakeHeader(fps=60.0, source="test")) as w:
        for i in range(FRAMES):
            w.write(_state(i), seq=i, t=i / 60)
    return path.read_bytes()


def _frame_payload(seq: int = BAD_FRAME, rt: float = BAD_FRAME / 60, **fields) -> bytes:
    msg = {**wire.face_to_message(_state(seq), seq), **fields}
    return encode_frame_payload(msgpack.packb(msg), rt)


def _header_payload(**fields) -> bytes:
    return msgpack.packb({**TakeHeader(fps=60.0, source="test").to_map(), **fields})


CRAFTS = {
    # what the record holds instead          (kind to replace, new payload)
    "header_is_a_list": (KIND_HEADER, lambda: msgpack.packb([1, 2, 3])),
    "profile_is_5": (KIND_HEADER, lambda: _header_payload(profile=5)),
    "seq_2_pow_63": (KIND_FRAME, lambda: _frame_payload(seq=2 ** 63)),
    "frame_time_nan": (KIND_FRAME, lambda: _frame_payload(rt=float("nan"))),
    "frame_time_inf": (KIND_FRAME, lambda: _frame_payload(rt=float("inf"))),
    "frame_time_1e12": (KIND_FRAME, lambda: _frame_payload(rt=1e12)),
    "message_time_nan": (KIND_FRAME, lambda: _frame_payload(t=float("nan"))),
    "end_is_a_list": (KIND_END, lambda: msgpack.packb(["done"])),
}


def craft(path: Path, name: str) -> Path:
    """A take like the writer's, with one record replaced (checksum recomputed) as CRAFTS[name] says."""
    data = _healthy(path.with_name("healthy-" + path.name))
    kind, payload = CRAFTS[name]
    records = _records(data)
    index = {KIND_HEADER: 0, KIND_FRAME: 1 + BAD_FRAME, KIND_END: len(records) - 1}[kind]
    assert records[index][0] == kind
    records[index] = (kind, payload())
    path.write_bytes(FILE_MAGIC + b"".join(encode_record(k, p) for k, p in records))
    return path


def record_mark_bomb(path: Path, megabytes: float = 6.0) -> Path:
    """A valid header, then nothing but record heads 13 bytes apart, each declaring a ~1 MiB payload."""
    header = encode_record(KIND_HEADER, _header_payload())
    head = RECORD_MARK + KIND_FRAME + struct.pack("<II", MAX_PAYLOAD - 13, 0x12345678)
    path.write_bytes(FILE_MAGIC + header + head * int(megabytes * 1e6 / len(head)))
    return path


def alternating_bomb(path: Path, megabytes: float = 2.0) -> Path:
    """Valid empty records of an unknown kind, each followed by a record head declaring ~1 MiB: a reader
    that checksums every declared payload re-reads a megabyte per 26 bytes."""
    tiny = encode_record(b"Q", b"")
    head = RECORD_MARK + KIND_FRAME + struct.pack("<II", MAX_PAYLOAD - 13, 0)
    path.write_bytes(FILE_MAGIC + encode_record(KIND_HEADER, _header_payload())
                     + (tiny + head) * int(megabytes * 1e6 / (len(tiny) + len(head))))
    return path


# --- the seven take commands, each run as a user would -------------------------------------------


def seven_commands(take: Path, out: Path, salvage: bool) -> dict[str, list[str]]:
    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    s = ["--salvage"] if salvage else []
    return {
        "inspect": ["inspect", str(take), *s],
        "plot": ["plot", str(take), "--out", str(out / "plot.png"), *s],
        "convert-take": ["convert", str(take), str(out / "copy.abr"), *s],
        "convert-csv": ["convert", str(take), str(out / "copy.csv"), *s],
        "replay": ["replay", str(take), "--bus", bus, "--control", control, *s],
        # record and process do not read a take, but are given one: it must not crash them either.
        "record": ["record", str(take), "--bus", bus, "--control", control, "--duration", "0.2"],
        "process": ["process", str(take), "--out", str(out / "processed.abr")],
    }


def run_cli(args: list[str]):
    result = CliRunner().invoke(app, args)
    # A SystemExit is how an exit code leaves; anything else escaped as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{args[0]} raised {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output, result.output
    return result


def assert_one_line_error(result, *expected: str) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("name", sorted(CRAFTS))
def test_each_crafted_take_gets_one_line_from_every_take_command(tmp_path, name):
    take = craft(tmp_path / f"{name}.abr", name)
    for command, args in seven_commands(take, tmp_path, salvage=False).items():
        result = run_cli(args)
        if command == "record":
            assert_one_line_error(result, "already exists")      # and the crafted file is left as it was
        elif command == "process":
            assert_one_line_error(result, "cannot decode", take.name)
        else:
            assert_one_line_error(result, take.name, "invalid data", "--salvage")


@pytest.mark.parametrize("name", sorted(CRAFTS))
def test_salvage_skips_the_crafted_record_and_keeps_every_good_frame(tmp_path, name):
    take = craft(tmp_path / f"{name}.abr", name)
    good = FRAMES if CRAFTS[name][0] != KIND_FRAME else FRAMES - 1
    for command, args in seven_commands(take, tmp_path, salvage=True).items():
        if command in ("record", "process"):
            continue
        result = run_cli(args)
        assert result.exit_code == 0, f"{command}: {result.output}"
        assert f"kept {good} good frames" in result.output, result.output
    copy = read_take(tmp_path / "copy.abr")
    assert len(copy) == good and copy.complete
    assert np.all(np.isfinite(copy.times)) and np.all(np.isfinite(copy.blendshapes))
    assert BAD_FRAME not in copy.seqs if CRAFTS[name][0] == KIND_FRAME else list(copy.seqs) == list(range(FRAMES))
    assert all(math.isfinite(f.state.t_capture) for f in copy.frames)


def test_the_reason_for_invalid_data_is_named(tmp_path):
    cases = {"header_is_a_list": "the header is a list, not a map",
             "profile_is_5": "header field 'profile' is 5, not a map or nil",
             "seq_2_pow_63": "frame seq 9223372036854775808 is outside 0..2**63-1",
             "frame_time_nan": "frame time nan is not a take time",
             "frame_time_1e12": "frame time 1000000000000.0 is not a take time",
             "message_time_nan": "frame field 't' is nan, not a finite number",
             "end_is_a_list": "the end record is a list, not a map"}
    for name, reason in cases.items():
        with pytest.raises(TakeError) as err:
            read_take(craft(tmp_path / f"{name}.abr", name))
        assert reason in str(err.value), str(err.value)


class CountingZlib:
    """Stands in for the reader's zlib and counts the bytes it checksums."""

    def __init__(self) -> None:
        self.bytes = 0

    def crc32(self, data: bytes, value: int = 0) -> int:
        self.bytes += len(data)
        return zlib.crc32(data, value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bomb,good_bytes", [(record_mark_bomb, 0), (alternating_bomb, 13)])
def test_a_flood_of_record_marks_is_parsed_with_work_bounded_by_the_file_size(tmp_path, monkeypatch, bomb,
                                                                              good_bytes):
    data = bomb(tmp_path / "bomb.abr").read_bytes()
    counter = CountingZlib()
    monkeypatch.setattr(take_format, "zlib", counter)
    take = parse_take("bomb.abr", data)
    # Each byte is checksummed about once whatever the marks declare (trusting each declared length
    # checksums a megabyte per mark: about 80,000 times the file for the record-mark flood).
    assert counter.bytes <= 3 * len(data), counter.bytes / len(data)
    assert take.damage and not take.frames
    # The damage starts where the real records stop (after the header, and the alternating bomb's first
    # empty record) and is all of the rest: the reader found nothing in it to keep.
    assert take.damage[0].start == len(FILE_MAGIC) + len(encode_record(KIND_HEADER, _header_payload())) + good_bytes
    assert take.damage[-1].end == len(data)


@pytest.mark.timeout(120)
def test_the_record_mark_bomb_gets_one_line_from_every_take_command(tmp_path):
    take = record_mark_bomb(tmp_path / "bomb.abr")
    for command, args in seven_commands(take, tmp_path, salvage=False).items():
        result = run_cli(args)
        if command == "record":
            assert_one_line_error(result, "already exists")
        elif command == "process":
            assert_one_line_error(result, "cannot decode")
        else:
            assert_one_line_error(result, "bomb.abr is corrupted from byte", "no frame read before the damage")
    for command, args in seven_commands(take, tmp_path, salvage=True).items():
        if command in ("record", "process"):
            continue
        result = run_cli(args)
        assert "kept 0 good frames" in result.output, result.output
        if command in ("plot", "replay"):     # nothing to draw or send: one line saying so
            assert_one_line_error(result, "no frames")
        else:
            assert result.exit_code == 0, result.output


def test_header_texts_that_look_like_markup_are_shown_as_written(tmp_path):
    # A valid take whose source is rich markup and matplotlib mathtext: shown literally, never parsed.
    source = "[/] [bold]$\\frac{$"
    path = tmp_path / "[red]odd$.abr"
    with TakeWriter(path, TakeHeader(fps=60.0, source=source)) as w:
        for i in range(FRAMES):
            w.write(_state(i), seq=i, t=i / 60)
    result = run_cli(["inspect", str(path)])
    assert result.exit_code == 0 and f"source {source}" in result.output and "[red]odd$.abr" in result.output
    result = run_cli(["plot", str(path), "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    result = run_cli(["replay", str(path), "--to", "abc"])
    assert_one_line_error(result, "cannot read position 'abc'")
    result = run_cli(["inspect", str(tmp_path / "[/]missing.abr")])
    assert_one_line_error(result, "no such take", "[/]missing.abr")


@pytest.mark.timeout(120)
def test_replay_shortens_a_pause_of_years_instead_of_waiting_for_it(tmp_path):
    path = tmp_path / "pause.abr"
    with TakeWriter(path, TakeHeader(fps=60.0)) as w:
        for i in range(10):
            w.write(_state(i), seq=i, t=i / 60 + (1e9 if i >= 5 else 0.0))   # 31 years between frames 4 and 5
    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    result = run_cli(["replay", str(path), "--bus", bus, "--control", control])
    assert result.exit_code == 0, result.output
    assert "1 pause(s) over 10 s" in result.output and "sent 10 frames" in result.output
    result = run_cli(["replay", str(path), "--bus", bus, "--control", control, "--speed", "nan"])
    assert_one_line_error(result, "--speed must be a number above 0")


# --- Live Link Face CSV ----------------------------------------------------------------------------


def write_csv(path: Path, spoil: dict[tuple[int, str], str] | None = None, rows: int = 6) -> Path:
    """An app-layout CSV of ``rows`` frames; ``spoil`` replaces cells by (data row, column name)."""
    lines = [",".join(LLF_HEADER)]
    for r in range(rows):
        cells = {"Timecode": f"14:00:00:{r:02d}.000", "BlendShapeCount": "61"}
        cells.update({name: f"{0.1 + 0.01 * r:.3f}" for name in LLF_HEADER[2:]})
        cells.update({k[1]: v for k, v in (spoil or {}).items() if k[0] == r})
        lines.append(",".join(cells[name] for name in LLF_HEADER))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


BAD_CSVS = {
    # name: (row, column, cell, what the error says about it)
    "inf_angle": (2, "HeadYaw", "inf", "column HeadYaw: 'inf' is not a finite number"),
    "nan_shape": (2, "JawOpen", "nan", "column JawOpen: 'nan' is not a finite number"),
    "overflow_shape": (2, "JawOpen", "1e39", "column JawOpen: '1e39' is not a finite number"),
    "word_shape": (2, "JawOpen", "abc", "column JawOpen: 'abc' is not a number"),
    "nan_timecode": (2, "Timecode", "14:00:00:nan", "column Timecode: malformed timecode '14:00:00:nan'"),
    "negative_timecode": (2, "Timecode", "-14:00:00:02.000", "column Timecode: malformed timecode '-14:00:00:02.000'"),
    "inf_timecode": (2, "Timecode", "14:00:00:inf", "column Timecode: malformed timecode '14:00:00:inf'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_each_malformed_csv_cell_gets_one_line_naming_its_line_and_column(tmp_path, name):
    row, column, cell, says = BAD_CSVS[name]
    path = write_csv(tmp_path / f"{name}.csv", {(row, column): cell})
    line = row + 2          # the header is line 1
    for command in ("inspect", "replay"):
        result = run_cli([command, str(path)])
        assert_one_line_error(result, f"{name}.csv line {line}, {says}", "--salvage")


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_salvage_drops_the_malformed_row_and_counts_it(tmp_path, name):
    row, column, cell, _ = BAD_CSVS[name]
    path = write_csv(tmp_path / f"{name}.csv", {(row, column): cell})
    take = import_csv(path, salvage=True)
    assert len(take) == 5 and [d.start for d in take.damage] == [row + 2]
    assert np.all(np.isfinite(take.blendshapes)) and np.all(np.isfinite(take.times))
    result = run_cli(["convert", str(path), str(tmp_path / "clean.abr"), "--salvage"])
    assert result.exit_code == 0, result.output
    assert f"skipped a row of {name}.csv: line {row + 2}, column {column}" in result.output
    assert "kept 5 good frames" in result.output
    clean = read_take(tmp_path / "clean.abr")
    assert len(clean) == 5 and np.all(np.isfinite(clean.blendshapes))


def test_a_latin1_byte_in_a_csv_is_a_one_line_encoding_error(tmp_path):
    path = write_csv(tmp_path / "latin.csv")
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"0.120", b"0.12\xe9", 1)     # one Latin-1 'e' in line 4
    path.write_bytes(b"\n".join(lines))
    result = run_cli(["inspect", str(path)])
    assert_one_line_error(result, "latin.csv is not UTF-8 text: byte 0xe9 at line 4", "re-save the file as UTF-8")


def test_a_cell_over_131072_characters_is_a_one_line_error(tmp_path):
    path = write_csv(tmp_path / "huge.csv", {(1, "JawOpen"): "1" * 131_073})
    result = run_cli(["inspect", str(path)])
    assert_one_line_error(result, "huge.csv line 3", "longer than the csv reader's limit of 131,072 characters")
    with pytest.raises(LiveLinkCsvError, match="line 3"):
        import_csv(path, salvage=True)    # not a cell salvage can drop: the reader cannot split the row


# --- image folders ---------------------------------------------------------------------------------


def huge_png(path: Path, side: int = 12000) -> Path:
    """A ~420 KB PNG of side x side black pixels, written a row at a time (never held decoded)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def huge_png_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    huge_png(folder / "big.png")
    assert (folder / "big.png").stat().st_size < 500_000
    return folder


def test_an_image_declaring_12000x12000_pixels_is_refused_by_name_before_decoding(huge_png_dir, caplog):
    import cv2
    small = np.zeros((48, 64, 3), np.uint8)
    cv2.imwrite(str(huge_png_dir / "a_small.png"), small)
    frames = list(open_source(SourceConfig(spec=str(huge_png_dir), realtime=False)).frames())
    assert [f.image.shape for f in frames] == [(48, 64, 3)]          # the small one still plays
    assert "big.png: 12000x12000 pixels is more than this source decodes" in caplog.text


def test_process_on_the_huge_png_says_so_and_stays_small(huge_png_dir, tmp_path):
    out = tmp_path / "out.abr"
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stdout.write(p.stdout + p.stderr); "
            "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code,
                           *cli("process", str(huge_png_dir), "--out", str(out), "--estimator", "geometry")],
                          capture_output=True, text=True, env=hermetic_env(), timeout=240)
    assert "big.png: 12000x12000 pixels is more than this source decodes" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout
    maxrss_mb = int(proc.stdout.rsplit("MAXRSS_KB", 1)[1]) / 1024
    print(f"process on the 12000x12000 PNG: peak RSS {maxrss_mb:.0f} MB")
    assert maxrss_mb < 400        # decoding it would take 432 MB for the pixels alone (1.48 GB peak seen)
