"""``record``, ``replay``, ``process``, ``plot``, ``convert`` and ``inspect``: takes (docs/takes.md)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.markup import escape

from avatar_bridge.adapters.registry import list_adapters
from avatar_bridge.cli.common import (adapter_flag, stop_on_signals, BUS_OPTION, CALIBRATION_OPTION, CONTROL_OPTION,
                                      CONTROL_TOKEN_OPTION, ESTIMATOR_HELP,
                                      PROFILE_OPTION, SMOOTHING_OPTION, console, err_console, fail, on_off,
                                      user_errors, HEADSET_OPTION, MOUTH_CAMERA_OPTION, ROI_OPTION, headset_overrides)
from avatar_bridge.takes.live_link_csv import LiveLinkCsvConfig, LiveLinkCsvError, export_csv, import_csv
from avatar_bridge.takes.plot import PlotConfig, PlotError, parse_shapes, parse_size, plot_take
from avatar_bridge.takes.recorder import Recorder, RecorderConfig, RecordingError
from avatar_bridge.takes.replay import ReplayBus, ReplayConfig, ReplayError, Replayer, TakePosition, select_frames
from avatar_bridge.takes.format import Take, TakeError, TakeWriterConfig, profile_to_header, read_take, write_take

SALVAGE_HELP = "Keep the readable part of a damaged take instead of stopping with an error."


@contextmanager
def _closing(closers: list) -> Iterator[None]:
    """Call every closer in the list (filled while the block runs), last first, on the way out."""
    try:
        yield
    finally:
        for close in reversed(closers):
            close()


SALVAGE_NOTES = 10   # a crafted file can hold thousands of damaged regions; the first few say enough


def load_take(path: Path, salvage: bool = False) -> Take:
    """A take file, or a Live Link Face CSV (by the .csv extension), with salvage notes printed."""
    if path.suffix.lower() == ".csv":
        take = import_csv(path, salvage=salvage)
    else:
        take = read_take(path, salvage=salvage)
    for d in take.damage[:SALVAGE_NOTES]:
        what = (f"a row of {path.name}" if d.kind == "row"
                else f"bytes {d.start}-{d.end} of {path.name} ({d.kind}, after frame {d.after_frame})")
        err_console.print("[yellow]salvage:[/] " + escape(f"skipped {what}" + (f": {d.reason}" if d.reason else "")),
                          highlight=False)
    if len(take.damage) > SALVAGE_NOTES:
        err_console.print(f"[yellow]salvage:[/] ... and {len(take.damage) - SALVAGE_NOTES} more", highlight=False)
    if take.damage:
        err_console.print(f"[yellow]salvage:[/] kept {len(take)} good frames", highlight=False)
    return take


def _load_profile(name: Optional[str]) -> Any:
    from avatar_bridge.signal.profile import ProfileError, default_profile_dir, load_or_default
    with user_errors(ProfileError):
        return load_or_default(name, default_profile_dir())


# --- record --------------------------------------------------------------------------------------


def _daemon_status(control: str) -> dict:
    from avatar_bridge.bus.sockets import control_request
    try:
        reply = control_request({"cmd": "status"}, control, timeout_ms=300)
        return reply if reply.get("ok") else {}
    except TimeoutError:
        return {}


def record(
    take: Path = typer.Argument(..., help="The take file to write (.abr by convention); with --via-daemon a "
                                "plain name, written into the daemon's takes folder."),
    bus: str = BUS_OPTION,
    control: str = CONTROL_OPTION,
    control_token: Optional[str] = CONTROL_TOKEN_OPTION,
    via_daemon: bool = typer.Option(False, "--via-daemon", help="Ask the running daemon to record (control "
                                    "socket record.start/record.stop) into its takes folder instead of "
                                    "subscribing from here."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", help="Stop after this many seconds."),
    frames: Optional[int] = typer.Option(None, "--frames", "-n", help="Stop after this many frames."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Nominal fps for the header (default: the daemon's)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Calibration profile to note in the header."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing take."),
) -> None:
    """Record every face message on the bus into a take until Ctrl-C (or --duration/--frames)."""
    with stop_on_signals() as stop:
        if via_daemon:
            _record_via_daemon(take, control, control_token, duration, overwrite, stop)
        else:
            _record(take, bus, control, duration, frames, fps, profile, overwrite, stop)


def _record(take: Path, bus: str, control: str, duration: Optional[float],
            frames: Optional[int], fps: Optional[float], profile: Optional[str], overwrite: bool,
            stop: threading.Event) -> None:
    status = _daemon_status(control)
    prof = profile_to_header(_load_profile(profile)) if profile else status.get("profile")
    config = RecorderConfig(
        path=str(take), bus_endpoint=bus, fps=fps or float(round(status.get("fps") or 0.0)) or 60.0,
        source=f"bus {bus}" + (f" ({status['source']})" if status.get("source") else ""),
        profile=prof if isinstance(prof, dict) else ({"name": prof} if isinstance(prof, str) else None),
        writer=TakeWriterConfig(overwrite=overwrite), max_frames=frames, max_duration_s=duration)
    with user_errors(TakeError, RecordingError):
        recorder = Recorder(config).start()
    console.print(f"recording {bus} into [bold]{take}[/]; Ctrl-C stops"
                  + ("" if recorder.connected.is_set() else " (no publisher yet; waiting for `avatar-bridge run`)"))
    started = time.monotonic()
    with console.status("") as live:
        while not stop.is_set() and not recorder.finished.is_set():
            s = recorder.summary
            # --duration counts from the first frame; with none at all it still bounds the wait.
            if duration is not None and not s.frames and time.monotonic() - started > duration:
                break
            live.update(f"{s.frames} frames, {s.duration_s:.1f} s, gaps {s.gaps}")
            # Short: a signal that lands on another thread is only handled when this one wakes up.
            stop.wait(0.05)
    with user_errors(RecordingError):
        summary = recorder.stop()
    if not summary.frames:
        take.unlink(missing_ok=True)   # a take with no frames only misleads later
        raise fail(f"no face messages arrived on {bus}{'' if recorder.connected.is_set() else ' (no daemon there)'}, "
                   f"so nothing was written; start `avatar-bridge run` (same --bus) and record again")
    console.print(summary.describe(), highlight=False)


def _record_via_daemon(take: Path, control: str, token: Optional[str], duration: Optional[float], overwrite: bool,
                       stop: threading.Event) -> None:
    from avatar_bridge.bus.sockets import control_request
    if take.parent != Path("."):
        # The daemon writes only into its own takes folder; a folder here is accepted when it is that one.
        with user_errors(TimeoutError):
            status = control_request({"cmd": "status"}, control, token=token)
        takes_dir = status.get("takes_dir")
        if not takes_dir or take.parent.resolve() != Path(takes_dir).resolve():
            raise fail(f"with --via-daemon the daemon writes into its takes folder ({takes_dir or 'see its status'}); "
                       f"give a plain name such as {take.name!r}, or record from here without --via-daemon")
    with user_errors(TimeoutError):
        reply = control_request({"cmd": "record.start", "path": take.name, "overwrite": overwrite}, control,
                                token=token)
    if not reply.get("ok"):
        hint = ("; this daemon has no recording commands, so record from here: drop --via-daemon"
                if "unknown command" in str(reply.get("error")) else "")
        raise fail(f"the daemon did not start recording: {reply.get('error')}{hint}")
    console.print(f"the daemon is recording into [bold]{reply.get('path')}[/]; Ctrl-C stops")
    stop.wait(duration)
    with user_errors(TimeoutError):
        reply = control_request({"cmd": "record.stop"}, control, timeout_ms=15000, token=token)
    if not reply.get("ok"):
        raise fail(f"record.stop failed: {reply.get('error')}")
    console.print(reply.get("summary", reply), highlight=False)


# --- replay --------------------------------------------------------------------------------------

def _adapter_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot:
            raise fail(f"bad --adapter-opt {pair!r}; use ADAPTER.FIELD=VALUE, e.g. vmc.port=39540")
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        out.setdefault(name, {})[field] = parsed
    return out


def replay(
    take: Path = typer.Argument(..., help="A take (.abr) or a Live Link Face CSV."),
    bus: str = BUS_OPTION,
    control: str = CONTROL_OPTION,
    speed: float = typer.Option(1.0, "--speed", help="Playback speed; 2 plays twice as fast."),
    max_gap: float = typer.Option(10.0, "--max-gap", help="Play a pause longer than this many seconds between "
                                  "two frames as one frame interval."),
    loop: bool = typer.Option(False, "--loop", help="Start again at the end, until Ctrl-C."),
    start: Optional[str] = typer.Option(None, "--from", help="Start: seconds (2.5 or 2.5s) or a frame (150f)."),
    end: Optional[str] = typer.Option(None, "--to", help="Stop before: seconds or a frame (half-open range)."),
    vmc: bool = adapter_flag("vmc", "Also send straight out as"),
    livelink: bool = adapter_flag("livelink", "Also send straight out as"),
    vrchat: bool = adapter_flag("vrchat", "Also send straight out as"),
    ifacialmocap: bool = adapter_flag("ifacialmocap", "Also send straight out as"),
    adapter_opt: list[str] = typer.Option([], "--adapter-opt", help="Adapter option, e.g. vmc.port=39540 (repeatable)."),
    no_bus: bool = typer.Option(False, "--no-bus", help="Do not publish on the bus (adapters only)."),
    salvage: bool = typer.Option(False, "--salvage", help=SALVAGE_HELP),
) -> None:
    """Publish a take on the bus at its original timing, so every subscriber treats it as live."""
    from avatar_bridge.bus.sockets import BusConfig, BusError

    with user_errors(TakeError, LiveLinkCsvError, ReplayError):
        t = load_take(take, salvage)
        frames = select_frames(t.frames, TakePosition.parse(start) if start else None,
                               TakePosition.parse(end) if end else None)
    wanted = {"vmc": vmc, "livelink": livelink, "vrchat": vrchat, "ifacialmocap": ifacialmocap}
    chosen = [n for n in list_adapters() if wanted[n]]
    if no_bus and not chosen:
        raise fail(f"--no-bus needs at least one adapter ({', '.join('--' + n for n in list_adapters())})")
    sinks, closers = [], []
    bus_side = None
    with stop_on_signals() as stop, _closing(closers):
        if chosen:
            from avatar_bridge.adapters.registry import create_adapters
            with user_errors(ValueError, OSError):
                adapters = create_adapters(chosen, _adapter_options(adapter_opt))
            sinks += [a.send for a in adapters]
            closers += [a.close for a in adapters]
        with user_errors(ReplayError):
            replayer = Replayer(frames, ReplayConfig(speed=speed, loop=loop, max_gap_s=max_gap), sinks)
        if not no_bus:
            with user_errors(BusError):
                bus_side = ReplayBus(BusConfig(pub_endpoint=bus, control_endpoint=control),
                                     source=f"replay:{take.name}", fps=speed / replayer.frame_interval)
            closers.append(bus_side.close)
            replayer.sinks.append(bus_side.publish_face)
        where = ", ".join(([f"bus {bus}"] if bus_side else []) + chosen)
        console.print(f"replaying {len(frames)} frames of [bold]{escape(take.name)}[/] "
                      f"({replayer.duration_s:.1f} s at {speed:g}x{', looped' if loop else ''}) to {where}; "
                      "Ctrl-C stops" + (f" ({replayer.summary.gaps_shortened} pause(s) over {max_gap:g} s or back "
                                        "in time played as one frame interval)" if replayer.summary.gaps_shortened
                                        else ""), highlight=False)
        time.sleep(0.3 if bus_side else 0.0)  # let subscribers that are already waiting connect first
        summary = replayer.run(stop, bus_side.idle if bus_side else None)
    console.print(f"sent {summary.frames_sent} frames in {summary.duration_s:.1f} s"
                  + (f" ({summary.passes} passes)" if loop else "")
                  + (f"; {summary.late} sent late (max {summary.max_late_s * 1000:.0f} ms)" if summary.late else ""))


# --- process -------------------------------------------------------------------------------------


def process(
    source: Path = typer.Argument(..., help="A video file, a folder of images (read in sorted name order), "
                                  "or demo (the built-in clip)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output: NAME.csv for Live Link Face CSV, anything else a take."),
    fps: float = typer.Option(30.0, "--fps", help="Frame rate of an image folder (a video keeps its own timing)."),
    estimator: str = typer.Option("auto", "--estimator", "-e", help=ESTIMATOR_HELP),
    smoothing: str = SMOOTHING_OPTION,
    calibration: str = CALIBRATION_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    no_tracking_columns: bool = typer.Option(False, "--no-tracking-columns",
                                             help="CSV: write only the app's columns (no FaceDetected/Confidence)."),
    headset: bool = HEADSET_OPTION,
    roi: Optional[str] = ROI_OPTION,
    mouth_camera: bool = MOUTH_CAMERA_OPTION,
) -> None:
    """Run the full pipeline over a video or image folder as fast as possible, into a take or a CSV."""
    from avatar_bridge.estimators.registry import EstimatorError
    from avatar_bridge.takes.process import ProcessInterrupted, run_process
    from avatar_bridge.signal.profile import ProfileError
    from avatar_bridge.tracking.sources import SourceError

    smooth, calib = on_off(smoothing, "--smoothing"), on_off(calibration, "--calibration")
    if not 0 < fps <= 1000:   # also false for nan; an image folder's frame times are index / fps
        raise fail(f"--fps must be above 0 and at most 1000, got {fps}")
    headset_keys = headset_overrides(headset, roi, mouth_camera)
    with user_errors(TakeError, SourceError, EstimatorError, ProfileError, OSError, ProcessInterrupted):
        report = run_process(source, out, fps, estimator, smooth, calib, profile, max_frames, overwrite,
                             csv_config=LiveLinkCsvConfig(tracking_columns=not no_tracking_columns),
                             headset=headset_keys)
    console.print(f"wrote {report['frames']} frames ({report['faces']} with a face) to {out} as a {report['kind']} "
                  f"in {report['seconds']:.1f} s ({report['fps']:.1f} frames/s, estimator {report['estimator']})",
                  highlight=False)


# --- plot, convert, inspect ----------------------------------------------------------------------


def plot(
    take: Path = typer.Argument(..., help="A take (.abr) or a Live Link Face CSV."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default: the input's name with .png, beside it)."),
    shapes: Optional[str] = typer.Option(None, "--shapes", help="Comma-separated shapes (default: those that moved most)."),
    top: int = typer.Option(6, "--top", help="How many of the most-moving shapes, without --shapes."),
    size: str = typer.Option("1600x900", "--size", help="Image size in pixels, WIDTHxHEIGHT."),
    salvage: bool = typer.Option(False, "--salvage", help=SALVAGE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
) -> None:
    """Draw blendshape curves and head rotation over time, with blinks marked, to a PNG."""
    out = out or take.with_suffix(".png")
    with user_errors(TakeError, LiveLinkCsvError, PlotError):
        width, height = parse_size(size)
        result = plot_take(load_take(take, salvage), out, PlotConfig(shapes=parse_shapes(shapes), top=top, width_px=width,
                                                                     height_px=height, overwrite=overwrite))
    console.print(f"wrote {out} ({width}x{height}): {', '.join(result.shapes)}; {len(result.blinks)} blinks",
                  highlight=False)


def convert(
    src: Path = typer.Argument(..., help="A take (.abr) or a Live Link Face CSV."),
    dst: Path = typer.Argument(..., help="NAME.csv writes Live Link Face CSV; anything else a take."),
    salvage: bool = typer.Option(False, "--salvage", help=SALVAGE_HELP + " Writes only the good frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    timecode_fps: int = typer.Option(60, "--timecode-fps", help="CSV timecode rate: 60 (the app's default) or 30."),
    no_tracking_columns: bool = typer.Option(False, "--no-tracking-columns",
                                             help="CSV: write only the app's columns (no FaceDetected/Confidence)."),
) -> None:
    """Convert between takes and Live Link Face CSV (or copy the good part of a damaged take)."""
    if dst.exists() and not overwrite:
        raise fail(f"{dst} already exists; pick another name or pass --overwrite")
    if src.resolve() == dst.resolve():
        raise fail("the output must be a different file from the input; the original is never modified")
    with user_errors(TakeError, LiveLinkCsvError, OSError):
        t = load_take(src, salvage)
        if dst.suffix.lower() == ".csv":
            rows = export_csv(t, dst, LiveLinkCsvConfig(timecode_fps=timecode_fps,
                                                        tracking_columns=not no_tracking_columns))
        else:
            note = {"converted_from": src.name, **({"salvaged": True} if t.damage else {})}
            header = replace(t.header, extra={**t.header.extra, **note})
            write_take(dst, t.frames, header, overwrite=overwrite)
            rows = len(t.frames)
    console.print(f"wrote {rows} frames to {dst}")


def inspect(
    take: Path = typer.Argument(..., help="A take (.abr) or a Live Link Face CSV."),
    salvage: bool = typer.Option(False, "--salvage", help="Report a damaged take's readable part instead of failing."),
) -> None:
    """Describe a take: header, frames, duration, rate, seq gaps, and whether it ended cleanly."""
    with user_errors(TakeError, LiveLinkCsvError):
        t = load_take(take, salvage)
    h = t.header
    rate = (len(t) - 1) / t.duration_s if t.duration_s > 0 else 0.0
    # Header texts come from the file: escaped, so "[/]" in one is shown, not taken for markup.
    console.print(f"[bold]{escape(take.name)}[/]  format v{h.version}  source {escape(h.source or '?')}  "
                  f"started {escape(h.start_time or '?')}", highlight=False)
    console.print(f"{len(t)} frames, {t.duration_s:.2f} s, {rate:.1f} fps measured ({h.fps:g} nominal), "
                  f"{int(t.present.sum()) if len(t) else 0} with a face, seq gaps {t.seq_gaps()}", highlight=False)
    if h.profile and not (h.profile.get("shapes") or h.profile.get("filter")):
        # The built-in identity is named "default" too, but no such profile file exists.
        console.print("calibration profile: none (raw values, no profile was saved when this was taken)")
    elif h.profile:
        console.print(f"calibration profile: {escape(h.profile.get('name', '?'))} ({len(h.profile.get('shapes', {}))} "
                      "shapes calibrated; its values are stored in the take)", highlight=False)
    if t.end is not None and t.end.get("incomplete"):
        console.print(f"[yellow]incomplete: {escape(t.end['incomplete'])}[/]", highlight=False)
    if t.end is None and take.suffix.lower() != ".csv":
        console.print("[yellow]no end record: the writer was stopped abruptly (crash or kill); "
                      "everything up to its last flush is here[/]")


def register(app: typer.Typer) -> None:
    for command in (record, replay, process, plot, convert, inspect):
        app.command()(command)
