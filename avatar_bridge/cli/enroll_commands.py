"""``avatar-bridge enroll``: record your face locally and fine-tune the face-texture generator to it
(avatar_bridge/runtime/enroll.py records, training/enroll_gan.py fine-tunes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from avatar_bridge.cli.common import console, fail, user_errors
from avatar_bridge.signal.profile import ProfileError, default_profile_dir

# The pipeline and the sources (OpenCV, MediaPipe) are imported inside the command, so every other
# command starts without loading them (cli/daemon_commands.py does the same).


def register(app: typer.Typer) -> None:
    @app.command()
    def enroll(
        profile: str = typer.Option(..., "--profile", help="Whose face: the profile the result belongs to."),
        source: str = typer.Option("camera:0", "--source", "-s", help="camera:N, a video file, a folder of images, or demo."),
        seconds: float = typer.Option(120.0, "--seconds", min=1.0, help="How long to record."),
        steps: int = typer.Option(300, "--steps", min=1, help="Fine-tuning steps (about 1 s each on a laptop CPU)."),
        max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop recording after this many faces."),
        yes: bool = typer.Option(False, "--yes", help="Consent given up front (for scripts): skip the question."),
        delete: bool = typer.Option(False, "--delete", help="Delete everything enrolment stored for --profile."),
        profile_dir: Optional[Path] = typer.Option(None, "--profile-dir", help="Where profiles live (default: your config dir)."),
        int8: bool = typer.Option(True, "--int8/--no-int8", help="Also build the pruned + int8 generator."),
    ) -> None:
        """Record your face (with your consent; it stays on this computer) and fine-tune the face
        texture to it; `run --texture --profile NAME` then draws your face."""
        from avatar_bridge.runtime import enroll as enrolment
        from avatar_bridge.runtime.pipeline import EstimatorError, PipelineConfig
        from avatar_bridge.runtime.texture import enrolled_dir
        from avatar_bridge.tracking.sources import SourceConfig, SourceError

        where_dir = profile_dir or default_profile_dir()
        with user_errors(ProfileError):
            where = enrolled_dir(where_dir, profile)
        if delete:
            removed = enrolment.delete(profile, where_dir)
            console.print(f"deleted {removed}" if removed else f"nothing enrolled for {profile} ({where})",
                          highlight=False, soft_wrap=True)
            return
        console.print(enrolment.CONSENT_TEXT.format(source=source, seconds=seconds, where=where, profile=profile),
                      highlight=False, soft_wrap=True)
        if not yes:
            answer = sys.stdin.readline().strip().lower() if not sys.stdin.isatty() else \
                input("Do you consent? Type 'yes' to go on: ").strip().lower()
            if answer not in ("y", "yes"):
                raise fail("no consent given: nothing was recorded or stored")
        try:
            from training.enroll_gan import finetune
        except ImportError as exc:
            raise fail(f"fine-tuning needs torch ({exc.name} is missing): pip install 'avatar-bridge[train]'") from None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        config = enrolment.EnrollConfig(profile=profile, profile_dir=str(where_dir),
                                        source=SourceConfig(spec=source), pipeline=PipelineConfig(),
                                        seconds=seconds, max_frames=max_frames)
        with user_errors(SourceError, EstimatorError, ValueError):
            with Progress(TextColumn("recording"), BarColumn(), TextColumn("{task.fields[faces]} faces"),
                          TimeElapsedColumn(), console=console, transient=True) as bar:
                task = bar.add_task("rec", total=seconds, faces=0)
                crops = enrolment.record(config, lambda n, t: bar.update(task, completed=t, faces=n))
        console.print(f"recorded {crops}; fine-tuning ({steps} steps; the bar shows the time left)")
        result = finetune(crops, where, steps=steps, int8=int8)
        log = result["summary"]["log"]
        console.print(f"done: L1 {log[0]['l1']:.3f} -> {log[-1]['l1']:.3f}; your face model is in {where}. "
                      f"Use it with `avatar-bridge run --texture --profile {profile}`; "
                      f"`avatar-bridge enroll --delete --profile {profile}` removes it.", highlight=False, soft_wrap=True)
