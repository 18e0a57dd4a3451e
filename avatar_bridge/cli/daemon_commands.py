"""``run``, ``listen``, ``devices`` and ``bench``."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from avatar_bridge.arkit import ARKIT_BLENDSHAPES
from avatar_bridge.bus.sockets import BusError, BusSubscriber
from avatar_bridge.conventions import head_yaw_pitch_roll
from avatar_bridge.cli.common import (adapter_flag, BUS_OPTION, CALIBRATION_OPTION, CONTROL_OPTION, CONTROL_TOKEN_OPTION,
                                      ESTIMATOR_HELP, HEADSET_OPTION, LINK_BLINKS_OPTION, MIRROR_OPTION,
                                      MOUTH_CAMERA_OPTION, PROFILE_OPTION, ROI_OPTION, SMOOTHING_OPTION, console,
                                      err_console, fail, headset_overrides, interrupt_noted, on_off,
                                      signal_overrides, user_errors)
from avatar_bridge.cli.preview_commands import (NO_BROWSER_OPTION, PREVIEW_HOST_OPTION, PREVIEW_OPTION,
                                               PREVIEW_PORT_OPTION)
from avatar_bridge.config_file import ConfigError, build, merge, read_config_file
from avatar_bridge.signal.profile import ProfileError, default_profile_dir, profile_path
from avatar_bridge.bus import wire

# The daemon, the pipeline and the sources (OpenCV, onnxruntime) are imported inside the commands that
# use them: every other command (record, listen, ...) then starts, and exits, without loading them.

SOURCE_HELP = "demo (built-in clip), camera:N, a video file, or a folder of images."


def daemon_config(config: Optional[Path], overrides: dict):
    """The DaemonConfig of a config file with the given flags' values over it."""
    from avatar_bridge.runtime.daemon import DaemonConfig
    return build(DaemonConfig, merge(read_config_file(config), overrides))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether flag ``name`` was typed (or set by its environment variable), not left at its default:
    only such flags override the config file."""
    # By the enum's name: typer 0.29 carries its own copy of click, older ones use click's.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _run_overrides(ctx: typer.Context, p: dict) -> dict:
    """The DaemonConfig tables the flags that were given stand for (``p``: run's parameters by name)."""
    flags = {  # parameter -> (table, key, value); None as table: a top-level DaemonConfig field
        "source": ("source", "spec", p["source"]), "loop": ("source", "loop", p["loop"]),
        "fast": ("source", "realtime", not p["fast"]), "fps": ("source", "fps", p["fps"]),
        "estimator": ("pipeline", "estimator", p["estimator"]),
        "model": ("pipeline", "model_path", str(p["model"]) if p["model"] else None),
        "mirror": ("signal", "mirror", p["mirror"]), "link_blinks": ("signal", "link_blinks", p["link_blinks"]),
        "bus": ("bus", "pub_endpoint", p["bus"]), "control": ("bus", "control_endpoint", p["control"]),
        "control_token": ("bus", "control_token", p["control_token"]),
        "max_frames": (None, "max_frames", p["max_frames"]), "profile": (None, "profile", p["profile"]),
        "takes_dir": (None, "takes_dir", str(p["takes_dir"]) if p["takes_dir"] else None),
    }
    out: dict = {}
    for name, (table, key, value) in flags.items():
        if _given(ctx, name) and value is not None:
            (out.setdefault(table, {}) if table else out)[key] = value
    for name in ("smoothing", "calibration"):
        if _given(ctx, name):
            out.setdefault("signal", {})[name] = on_off(p[name], f"--{name}")
    texture = {key: value for name, key, value in (
        ("texture_fps", "fps", p["texture_fps"]), ("texture_int8", "int8", p["texture_int8"]),
        ("texture_reference", "reference", str(p["texture_reference"]) if p["texture_reference"] else None),
        ("virtual_camera", "virtual_camera", p["virtual_camera"])) if _given(ctx, name) and value is not None}
    if p["texture"] or p["virtual_camera"]:   # --virtual-camera implies --texture
        out["texture"] = {"enabled": True, **texture}
    elif texture:
        out["texture"] = texture
    headset = headset_overrides(p["headset"], p["roi"], p["mouth_camera"])
    if headset:
        out.setdefault("pipeline", {}).update(headset)
    host = {"host": p["adapter_host"]} if p["adapter_host"] else {}
    wanted = {"vmc": {**host, "port": p["vmc_port"]}, "vrchat": {**host, "port": p["vrchat_port"]},
              "livelink": {**host, "port": p["livelink_port"], "subject": p["livelink_subject"]},
              "ifacialmocap": host}
    adapters = {name: {k: v for k, v in opts.items() if v is not None} for name, opts in wanted.items() if p[name]}
    if adapters:
        out["adapters"] = adapters
    return out


def run(
    ctx: typer.Context,
    source: str = typer.Option("demo", "--source", "-s", help=SOURCE_HELP),
    loop: bool = typer.Option(False, "--loop", help="Restart a video or image folder at its end."),
    fast: bool = typer.Option(False, "--as-fast-as-possible", help="Do not pace files at their frame rate."),
    fps: float = typer.Option(30.0, "--fps", help="Frame rate of an image folder."),
    estimator: str = typer.Option("auto", "--estimator", "-e", help=ESTIMATOR_HELP),
    model: Optional[Path] = typer.Option(None, "--model", help="An .onnx model to use instead of the shipped one."),
    smoothing: str = SMOOTHING_OPTION,
    calibration: str = CALIBRATION_OPTION,
    mirror: bool = MIRROR_OPTION,
    link_blinks: bool = LINK_BLINKS_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    headset: bool = HEADSET_OPTION,
    roi: Optional[str] = ROI_OPTION,
    mouth_camera: bool = MOUTH_CAMERA_OPTION,
    vmc: bool = adapter_flag("vmc", "Send"),
    vrchat: bool = adapter_flag("vrchat", "Send"),
    livelink: bool = adapter_flag("livelink", "Send"),
    ifacialmocap: bool = adapter_flag("ifacialmocap", "Send"),
    adapter_host: Optional[str] = typer.Option(None, "--adapter-host", help="Where adapters send (default 127.0.0.1)."),
    vmc_port: Optional[int] = typer.Option(None, "--vmc-port", help="VMC port (default 39539)."),
    vrchat_port: Optional[int] = typer.Option(None, "--vrchat-port", help="VRChat OSC port (default: OSCQuery, else 9000)."),
    livelink_port: Optional[int] = typer.Option(None, "--livelink-port", help="Live Link Face port (default 11111)."),
    livelink_subject: Optional[str] = typer.Option(None, "--livelink-subject", help="Live Link subject name."),
    bus: str = BUS_OPTION,
    control: str = CONTROL_OPTION,
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    control_token: Optional[str] = CONTROL_TOKEN_OPTION,
    takes_dir: Optional[Path] = typer.Option(None, "--takes-dir", help="Folder for recordings asked over the control "
                                             "socket (default: the user's data folder, see `status`)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with [source], [bus], [pipeline], [signal], "
                                          "[adapters.NAME] tables; flags given override it."),
    preview: bool = PREVIEW_OPTION,
    preview_host: str = PREVIEW_HOST_OPTION,
    preview_port: int = PREVIEW_PORT_OPTION,
    no_browser: bool = NO_BROWSER_OPTION,
    texture: bool = typer.Option(False, "--texture", help="Also publish a generated face image (JPEG) "
                                 "on the bus topic 'texture' (your enrolled face with --profile, else the shipped one)."),
    texture_fps: float = typer.Option(15.0, "--texture-fps", min=0.1, help="Textures per second at most."),
    texture_int8: bool = typer.Option(False, "--texture-int8", help="Use the pruned + int8 generator (faster)."),
    texture_reference: Optional[Path] = typer.Option(None, "--texture-reference",
                                                     help="A face image (PNG/JPEG) whose appearance the texture takes."),
    virtual_camera: bool = typer.Option(False, "--virtual-camera", help="Send the texture to a virtual camera "
                                        "(OBS, Discord, calls; needs pyvirtualcam). Implies --texture."),
) -> None:
    """Track a face and stream its blendshapes, head pose and gaze onto the bus until Ctrl-C."""
    from avatar_bridge.runtime.daemon import Daemon
    from avatar_bridge.estimators.registry import EstimatorError
    from avatar_bridge.tracking.sources import SourceError
    from avatar_bridge.runtime.virtual_camera import VirtualCameraError
    from blendshape_model.texture import TextureModelError

    overrides = _run_overrides(ctx, dict(ctx.params))
    with user_errors(ConfigError, SourceError, BusError, EstimatorError, ProfileError, ValueError,
                     TextureModelError, VirtualCameraError):
        cfg = daemon_config(config, overrides)
        with interrupt_noted() as interrupted:
            daemon = Daemon(cfg)
    if interrupted.is_set():   # Ctrl-C while the model loaded: close what was opened, no traceback
        daemon.stop()
        daemon.close()
        err_console.print("interrupted while starting; nothing is running", highlight=False)
        raise typer.Exit(code=130)
    console.print(f"streaming [bold]{cfg.source.spec}[/] on {cfg.bus.pub_endpoint} "
                  f"(control {cfg.bus.control_endpoint}); Ctrl-C stops. Watch it with `avatar-bridge listen`.\n"
                  f"dropped = camera frames skipped because the previous one was still being processed "
                  f"(the newest frame wins, so the stream never lags).", soft_wrap=True)
    saved = profile_path(daemon.chain.profile.name, Path(cfg.profile_dir) if cfg.profile_dir else default_profile_dir())
    console.print(f"calibration profile: {daemon.chain.profile.name} " + (f"({saved})" if saved.is_file() else
                  "(none saved: raw values; `avatar-bridge calibrate` makes one)"), highlight=False, soft_wrap=True)
    page = None
    if preview:
        from avatar_bridge.cli.preview_commands import start_preview
        from avatar_bridge.preview.server import PreviewConfig
        page = start_preview(PreviewConfig(host=preview_host, port=preview_port, bus_endpoint=cfg.bus.pub_endpoint,
                                           control_endpoint=cfg.bus.control_endpoint,
                                           control_token=cfg.bus.control_token),
                             not no_browser, cleanup=daemon.close)
    line = StatusLine()
    daemon.status_listeners.append(line.update)
    try:
        with Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else _Null() as live:
            line.live = live if console.is_terminal else None
            daemon.run_forever()
            line.update(daemon.status(), final=True)
    finally:
        if page is not None:
            page.stop()
    console.print(f"stopped after {daemon.bus.seq} frames")


class StatusLine:
    """``run``'s one status line: redrawn in place on a terminal, else printed every ``every_s`` seconds."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.live: Live | None = None
        self.every_s = every_s
        self.last_print = -every_s
        self.last = (0, 0)          # (frames published, frames with a face) at the previous update

    def update(self, status: dict, final: bool = False) -> None:
        published, faces = status["frames_published"], status["frames_with_face"]
        if not published and not final:
            return
        new = published - self.last[0]
        face = f"face in {100 * (faces - self.last[1]) / new:.0f}% of frames" if new else "no new frames"
        self.last = (published, faces)
        text = (f"{status['fps']:5.1f} fps · {face} · estimator {status['estimator']} · "
                f"profile {status['profile']} · dropped {status['dropped_frames']} · "
                f"{published} frames sent")
        if self.live is not None:
            self.live.update(Text(text), refresh=True)
        elif final or time.monotonic() - self.last_print >= self.every_s:
            self.last_print = time.monotonic()
            print(text, flush=True)


def _table(msg: dict, fps: float, gaps: int, status: dict | None, top: int) -> Group:
    bs = np.asarray(msg["bs"])
    table = Table(title=f"seq {msg['seq']}  {'face' if msg['present'] else 'NO FACE'}  "
                        f"{fps:5.1f} fps  gaps {gaps}", expand=False)
    table.add_column("shape")
    table.add_column("value", justify="right")
    table.add_column("")
    for i in np.argsort(-bs)[:top]:
        table.add_row(ARKIT_BLENDSHAPES[i], f"{bs[i]:.2f}", "█" * int(round(bs[i] * 20)))
    yaw, pitch, roll = (math.degrees(a) for a in head_yaw_pitch_roll(msg["head"]["q"]))
    gaze = [math.degrees(a) for a in msg["gaze"]["l"]]
    # Below the table, not its caption: a caption wraps to the table's narrow width.
    below = f"head yaw {yaw:+.0f}° pitch {pitch:+.0f}° roll {roll:+.0f}°  gaze L yaw {gaze[0]:+.0f}° pitch {gaze[1]:+.0f}°"
    if status:
        # A replay has no camera, so nothing to drop: say so rather than "dropped None".
        dropped = "replay" if status.get("replay") else f"dropped {status.get('dropped_frames', 0)}"
        below += f"\nsource {status.get('source')}  sender {status.get('fps', 0):.1f} fps  {dropped}"
    return Group(table, Text(below))


NO_DAEMON_NOTICE_S = 2.0   # silence after which listen says there is no daemon yet


def listen(
    bus: str = BUS_OPTION,
    count: Optional[int] = typer.Option(None, "--count", "-n", help="Exit after this many face messages."),
    top: int = typer.Option(8, "--top", help="How many of the strongest shapes to show."),
    json_lines: bool = typer.Option(False, "--json", help="Print each message as one JSON line instead of a table."),
    timeout: float = typer.Option(0.0, "--timeout", help="Exit with an error after this many seconds of silence (0: wait forever)."),
) -> None:
    """Print live values from the bus: the strongest shapes, head pose, fps and gaps in seq."""
    import json

    sub = BusSubscriber(bus, topics=(wire.TOPIC_FACE, wire.TOPIC_STATUS))
    received, gaps, last_seq, last_status = 0, 0, None, None
    times: list[float] = []
    last_heard, heard_any, told = time.monotonic(), False, False
    try:
        with Live(console=console, auto_refresh=False, transient=False) if not json_lines else _Null() as live:
            while count is None or received < count:
                got = sub.recv(200)
                if got is None:
                    if not heard_any and not told and time.monotonic() - last_heard > NO_DAEMON_NOTICE_S:
                        told = True
                        err_console.print(f"no daemon on {bus} yet (start `avatar-bridge run`, same --bus); "
                                          "still waiting", highlight=False)
                    if timeout and time.monotonic() - last_heard > timeout:
                        raise fail(f"nothing heard on {bus} for {timeout:.0f} s — is `avatar-bridge run` running "
                                   "with the same --bus?")
                    continue
                last_heard, heard_any = time.monotonic(), True
                topic, payload = got
                if topic == wire.TOPIC_STATUS:
                    last_status = wire.decode_map(payload)
                    continue
                try:
                    msg = wire.decode_face_message(payload)
                except wire.WireError as exc:
                    console.print(f"[yellow]skipping a malformed message: {exc}")
                    continue
                if last_seq is not None and msg["seq"] > last_seq + 1:
                    gaps += msg["seq"] - last_seq - 1
                last_seq = msg["seq"]
                received += 1
                times = (times + [time.monotonic()])[-60:]
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
                if json_lines:
                    print(json.dumps(msg), flush=True)
                else:
                    live.update(_table(msg, fps, gaps, last_status, top), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def devices() -> None:
    """List the cameras OpenCV can open (use one with `run --source camera:N`)."""
    from avatar_bridge.tracking.sources import list_cameras
    cams = list_cameras()
    if not cams:
        console.print("no camera found. Plug one in, or use `avatar-bridge run --source demo` or a video file.")
        raise typer.Exit(code=1)
    table = Table("source", "resolution", "fps")
    for cam in cams:
        table.add_row(cam["device"], f"{cam['width']}x{cam['height']}", f"{cam['fps']:.0f}")
    console.print(table)


def bench(
    source: str = typer.Option("demo", "--source", "-s", help=SOURCE_HELP),
    frames: int = typer.Option(180, "--frames", "-n", help="How many frames to time."),
    estimator: str = typer.Option("auto", "--estimator", "-e", help=ESTIMATOR_HELP),
    smoothing: str = SMOOTHING_OPTION,
    calibration: str = CALIBRATION_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    json_out: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    """Time every stage on a source: median and p95 ms for decode, tracking, estimator, signal, publish."""
    from avatar_bridge.runtime.benchmark import run_pipeline_bench
    from avatar_bridge.estimators.registry import EstimatorError
    from avatar_bridge.tracking.sources import SourceError
    from avatar_bridge.signal.profile import default_profile_dir, load_or_default
    from avatar_bridge.signal.chain import SignalChain, SignalChainConfig

    with user_errors(SourceError, BusError, EstimatorError, ProfileError):
        chain = SignalChain(SignalChainConfig(**signal_overrides(smoothing, calibration, False, False)),
                            load_or_default(profile, default_profile_dir()))
        report = run_pipeline_bench(source, frames, estimator, chain)
    if json_out:
        import json
        print(json.dumps(report))
        return
    table = Table("stage", "median ms", "p95 ms", title=f"{report['frames']} frames of {source}, "
                  f"estimator {report['estimator']}, faces found {report['face_rate']:.0%}")
    for stage, v in report["stages"].items():
        table.add_row(stage, f"{v['median_ms']:.2f}", f"{v['p95_ms']:.2f}")
    console.print(table)
    console.print(f"end-to-end: {report['fps']:.1f} frames/s (one thread, decode to publish)")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(listen)
    app.command()(devices)
    app.command()(bench)
