"""Take files: exact round trip, crash tolerance (kill -9), and clear errors plus salvage for damage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avatar_bridge.bus.sockets import BusConfig, BusPublisher
from avatar_bridge.cli import app
from avatar_bridge.takes.format import (FILE_MAGIC, TakeError, TakeHeader, TakeWriter, TakeWriterConfig, read_take,
                                 TakeReader)
from helpers import free_port, synthetic_states, write_synthetic



def record_offsets(path: Path) -> list[int]:
    """Byte offset of every record (header first) in a healthy take."""
    data = path.read_bytes()
    offsets, pos = [], len(FILE_MAGIC)
    while pos < len(data):
        offsets.append(pos)
        pos += 13 + int.from_bytes(data[pos + 5:pos + 9], "little")
    return offsets


def test_take_round_trips_every_field_exactly(tmp_path):
    path = tmp_path / "take.abr"
    states = write_synthetic(path, 120)
    take = read_take(path)
    assert take.complete and len(take) == 120
    assert take.header.fps == 60.0 and take.header.source == "test" and len(take.header.names) == 52
    assert take.header.start_time  # ISO wall clock
    for i, (f, s) in enumerate(zip(take.frames, states)):
        assert f.seq == i and f.t == i / 60.0      # the take time is float64, exact
        np.testing.assert_array_equal(f.state.blendshapes, s.blendshapes)
        assert f.state.head_rotation == pytest.approx(s.head_rotation, abs=1e-7)
        assert f.state.gaze_left == pytest.approx(s.gaze_left, abs=1e-7)
        assert f.state.face_present == s.face_present and f.state.frame_index == s.frame_index
    assert take.end["frames"] == 120
    assert [f.seq for f in TakeReader(path)] == list(range(120))


def test_writer_refuses_to_overwrite_an_existing_take(tmp_path):
    path = tmp_path / "take.abr"
    write_synthetic(path, 3)
    with pytest.raises(TakeError, match="already exists.*--overwrite"):
        TakeWriter(path, TakeHeader())
    TakeWriter(path, TakeHeader(), TakeWriterConfig(overwrite=True)).close()
    assert len(read_take(path)) == 0


def test_a_take_whose_writer_never_closed_reads_back_to_its_last_flush(tmp_path):
    path = tmp_path / "take.abr"
    w = TakeWriter(path, TakeHeader(), TakeWriterConfig(flush_interval_s=3600))
    for i, s in enumerate(synthetic_states(30)):
        w.write(s, i)
        if i == 19:
            w.flush()
    # simulate the process dying: the last 10 frames were only in the writer's buffer
    take = read_take(path)
    assert len(take) == 20 and take.end is None and not take.damage


def test_truncated_take_names_where_and_salvage_keeps_the_frames_before(tmp_path):
    path = tmp_path / "take.abr"
    write_synthetic(path, 50)
    offsets = record_offsets(path)
    cut = offsets[1 + 30] + 20          # inside frame 30's record
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(TakeError) as err:
        read_take(path)
    msg = str(err.value)
    assert "take.abr is truncated after frame 30" in msg and "frames 0-29 were read" in msg
    assert f"byte {offsets[31]}" in msg and "--salvage" in msg
    take = read_take(path, salvage=True)
    assert [f.seq for f in take.frames] == list(range(30))
    assert take.damage[0].kind == "truncated" and take.damage[0].start == offsets[31]


def test_garbage_inside_a_take_is_located_and_salvage_keeps_both_sides(tmp_path):
    path = tmp_path / "take.abr"
    write_synthetic(path, 50)
    offsets = record_offsets(path)
    data = bytearray(path.read_bytes())
    start, end = offsets[1 + 20] + 7, offsets[1 + 24] + 100   # from inside frame 20 to inside frame 24
    data[start:end] = np.random.default_rng(1).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(TakeError) as err:
        read_take(path)
    msg = str(err.value)
    assert f"corrupted from byte {offsets[21]} to {offsets[26]}" in msg
    assert "frames 0-19 read before the damage, 25 good frames after it" in msg and "--salvage" in msg
    take = read_take(path, salvage=True)
    assert [f.seq for f in take.frames] == list(range(20)) + list(range(25, 50))
    assert take.end is not None  # the end record after the damage survived too


def test_records_of_a_kind_this_version_does_not_know_are_skipped(tmp_path):
    from avatar_bridge.takes.format import encode_record
    path = tmp_path / "take.abr"
    write_synthetic(path, 10)
    offsets = record_offsets(path)
    data = path.read_bytes()
    data = data[:offsets[5]] + encode_record(b"N", b"\x81\xa4note\xa5hello") + data[offsets[5]:]
    path.write_bytes(data)
    take = read_take(path)
    assert len(take) == 10 and take.complete


def test_a_garbage_file_is_not_mistaken_for_a_take(tmp_path):
    path = tmp_path / "noise.abr"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(TakeError, match="noise.abr is not an avatar-bridge take"):
        read_take(path, salvage=True)


def test_cli_reports_damage_in_one_line_and_convert_salvage_writes_a_clean_take(tmp_path):
    path = tmp_path / "take.abr"
    write_synthetic(path, 40)
    path.write_bytes(path.read_bytes()[:-30])   # cuts into the end record
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 1
    assert "truncated after frame 40" in result.output and "Traceback" not in result.output
    fixed = tmp_path / "fixed.abr"
    result = runner.invoke(app, ["convert", str(path), str(fixed), "--salvage"])
    assert result.exit_code == 0, result.output
    take = read_take(fixed)
    assert take.complete and len(take) == 40 and take.header.extra["salvaged"] is True


def test_kill_9_on_the_recorder_leaves_every_flushed_frame_readable(tmp_path):
    bus = f"tcp://127.0.0.1:{free_port()}"
    control = f"tcp://127.0.0.1:{free_port()}"   # nothing listens: the recorder must not wait for a daemon
    path = tmp_path / "killed.abr"
    pub = BusPublisher(BusConfig(pub_endpoint=bus, control_endpoint=control))
    proc = subprocess.Popen([sys.executable, "-m", "avatar_bridge", "record", str(path), "--bus", bus,
                             "--control", control], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    try:
        assert "recording" in proc.stdout.readline()    # printed once connected to our publisher
        states = synthetic_states(240)
        for s in states[:120]:                           # 2 s at 60 fps ...
            pub.publish_face(s)
            time.sleep(1 / 60)
        time.sleep(0.5)                                  # ... then idle for longer than the flush interval
        published_before_idle = pub.seq
        for s in states[120:]:                           # and kill -9 while frames are still streaming in
            pub.publish_face(s)
            time.sleep(1 / 60)
            if pub.seq == 180:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    take = read_take(path)                               # no damage: flushes are whole records
    seqs = [f.seq for f in take.frames]
    assert take.end is None
    assert seqs[:published_before_idle] == list(range(published_before_idle)), "every flushed frame is back"
    assert seqs == list(range(len(seqs))) and len(seqs) <= 180
    np.testing.assert_array_equal(take.frames[100].state.blendshapes, states[100].blendshapes)

