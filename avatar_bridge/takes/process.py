"""Offline processing: the full pipeline over a video or an image folder, as fast as the machine
allows, into a take or a Live Link Face CSV (``avatar-bridge process``)."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any, Optional

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avatar_bridge.takes.live_link_csv import LiveLinkCsvConfig, LiveLinkCsvWriter
from avatar_bridge.runtime.pipeline import Pipeline, PipelineConfig
from avatar_bridge.signal.profile import default_profile_dir, load_or_default
from avatar_bridge.signal.chain import SignalChain, SignalChainConfig
from avatar_bridge.tracking.sources import IMAGE_SUFFIXES, SourceConfig, demo_clip_path, open_source
from avatar_bridge.takes.format import TakeError, TakeHeader, TakeWriter, TakeWriterConfig, now_iso, profile_to_header


class ProcessInterrupted(RuntimeError):
    """``process`` stopped by Ctrl-C; what was written is kept, and a take's end record marks it incomplete."""


def _count_frames(path: Path, fps: float) -> int | None:
    if str(path) == "demo":
        path = demo_clip_path()
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return n or None


def run_process(source_path: Path, out: Path, fps: float = 30.0, estimator: str = "auto",
                smoothing: bool = True, calibration: bool = True, profile_name: Optional[str] = None,
                max_frames: Optional[int] = None, overwrite: bool = False, progress: bool = True,
                csv_config: LiveLinkCsvConfig = LiveLinkCsvConfig(),
                profile_dir: Optional[Path] = None, headset: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Run tracker, estimator and signal chain over a video or image folder as fast as possible,
    writing a take or (for ``.csv``) a Live Link Face CSV with one row per frame. Returns a summary.
    ``headset``: PipelineConfig's headset keys (``{"headset": True, "roi": (x, y, w, h)}``), or None."""
    if out.exists() and not overwrite:
        raise TakeError(f"{out} already exists; pick another name or pass --overwrite")
    source = open_source(SourceConfig(spec=str(source_path), realtime=False, fps=fps))
    profile = load_or_default(profile_name, profile_dir or default_profile_dir()) if calibration else None
    chain = SignalChain(SignalChainConfig(smoothing=smoothing, calibration=calibration), profile)
    pipeline = Pipeline.create(PipelineConfig(estimator=estimator, **(headset or {})), chain)
    total = _count_frames(source_path, fps)
    if max_frames is not None:
        total = min(total or max_frames, max_frames)
    header = TakeHeader(fps=float(source.fps), source=str(source_path), start_time=now_iso(),
                        profile=profile_to_header(profile),
                        extra={"estimator": pipeline.estimator.name, "smoothing": smoothing,
                               "calibration": calibration, **({"headset": dict(headset)} if headset else {})})
    is_csv = out.suffix.lower() == ".csv"
    frames = faces = 0
    interrupted = False
    started = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>6.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    if is_csv:
        fh = open(out, "w", newline="", encoding="utf-8")
        csv_writer = LiveLinkCsvWriter(fh, _dt.datetime.now().astimezone(), csv_config)
    else:
        take_writer = TakeWriter(out, header, TakeWriterConfig(overwrite=True))
    try:
        with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
            task = bar.add_task(source_path.name, total=total, rate=0.0)
            for frame in source.frames():
                if max_frames is not None and frames >= max_frames:
                    break
                state, _ = pipeline.process(frame)
                if is_csv:
                    csv_writer.write(state, frame.t_capture)
                else:
                    take_writer.write(state, frame.index, frame.t_capture)
                frames += 1
                faces += int(state.face_present)
                bar.update(task, advance=1, rate=frames / max(1e-9, time.perf_counter() - started))
    except KeyboardInterrupt:
        interrupted = True
        raise ProcessInterrupted(f"stopped by Ctrl-C after {frames} frames; {out} holds only those"
                                 + ("" if is_csv else " and is marked incomplete (`avatar-bridge inspect` says so)"))
    finally:
        pipeline.close()
        if is_csv:
            fh.close()
        else:
            # The end record says the take stops early, so it is never mistaken for the whole source.
            take_writer.close({"faces": faces, "estimator": pipeline.estimator.name,
                               **({"incomplete": f"interrupted after {frames} of {total or '?'} frames"}
                                  if interrupted else {})})
    elapsed = time.perf_counter() - started
    return {"frames": frames, "faces": faces, "seconds": elapsed, "fps": frames / elapsed if elapsed else 0.0,
            "out": str(out), "kind": "csv" if is_csv else "take", "estimator": pipeline.estimator.name}
