"""Real-face evaluation: every estimator side by side on labelled real-person clips.

    python -m training.evaluate_real                      # ../shared/data/real-faces, all estimators
    python -m training.evaluate_real --data DIR --estimators geometry,neural --smoothing off
    python -m training.evaluate_real --headset [--seed 16]   # headset mode under a painted visor

A folder holds mp4 clips and a ``labels.json`` (see ../shared/data/real-faces/README.md): per clip,
events ``{"type", "start", "end"}`` (inclusive frame indices) and ``neutral`` ranges. Each clip is
tracked once with our tracker; each estimator then reads those observations through the signal chain
with shipped defaults (as ``avatar-bridge process`` would). Two references run beside them:
``teacher``: MediaPipe's blendshape model fed *our* tracker's landmarks (training/teacher.py), and
``mediapipe``: MediaPipe's whole Face Landmarker (Tasks API) on the frames, the peer.

Hit rules. A detector is a value per frame:
  blink = min(eyeBlinkLeft, eyeBlinkRight) (both eyes), wink = |eyeBlinkLeft - eyeBlinkRight|,
  jaw_open = jawOpen, smile = mean(mouthSmileLeft, mouthSmileRight),
  brows_up = max(browInnerUp, mean(browOuterUpLeft, browOuterUpRight)), mouth_pucker = mouthPucker.
It *fires* at a frame when its value reaches the detector's level and rises above the clip's neutral
level (the median over the clip's neutral frames; the 10th percentile of the clip where none are
labelled) by the detector's rise: 0.5 and 0.3 for blink, wink and smile (the eyes close, the mouth
corners go up: ARKit rigs show that from about half way); 0.25 and 0.2 for jaw_open, brows_up and
mouth_pucker (a jaw at a quarter of its range is a clearly open mouth, and speech rarely opens it
further; brows and lips move little of their range in ordinary expression). An event is *caught*
when its detector fires at some frame from ``start - 2`` to ``end + 2`` (two frames of slack for
by-eye labels). A *false fire* is a labelled neutral frame on which any detector reaches its level.
Head turns are not scored here.
Signal check (``--signal``): each estimator also runs with smoothing off; on the eyes it reports
the still-face jitter drop (frame-to-frame std of eyeBlink over the labelled neutral ranges, over
sqrt 2: the shimmer a user sees, not slow drift; smoothing off over on) and, per blink, the peak of both eyes' blink after the chain over the peak with
smoothing off (what the filter costs a real blink).
Agreement: per shape, Pearson r with the peer over the frames where both found a face, clips pooled;
the mean over shapes the peer moves (std > 0.05).
Headset mode (``--headset``, docs/headset.md): every clip gets a headset painted over the upper face
of each frame (training/headset_data.py's painter, placed from the clean frame's tracked mesh; one
seeded visor per clip), then four runs: headset mode on (HeadsetTracker + LowerFaceEstimator + the
chain, as ``process --headset``) and off (``auto``), on the painted and on the clean frames. Only the
lower-face events (jaw_open, smile, mouth_pucker) and those detectors' false fires are scored; beside
them agreement with the peer on every lower-face shape it moves (the peer reads the *clean* frames, so
it says how much of the unoccluded mouth each run recovers), the neutral frames on which any other
lower-face shape (those no clip here shows: ``lower_face.REAL_CHECKED``'s complement) reaches 0.3,
the frames found, the frames whose state sent eyes or brows as tracked, and the mesh-fit share.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avatar_bridge.arkit import ARKIT_BLENDSHAPES, INDEX
from avatar_bridge.runtime.pipeline import PipelineConfig, build_estimator
from avatar_bridge.signal.chain import SignalChain, SignalChainConfig
from avatar_bridge.tracking.tracker import FaceTracker
from avatar_bridge.types import FaceObservation, FaceState, Frame

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-faces"
# (level, rise above neutral) per detector; the module docstring says why.
FIRE = {"blink": (0.5, 0.3), "wink": (0.5, 0.3), "smile": (0.5, 0.3),
        "jaw_open": (0.25, 0.2), "brows_up": (0.25, 0.2), "mouth_pucker": (0.25, 0.2)}
SLACK_FRAMES = 2
SCORED_EVENTS = ("blink", "wink", "jaw_open", "smile", "brows_up", "mouth_pucker")
PEERS = ("teacher", "mediapipe")


def detector_values(bs: np.ndarray) -> dict[str, np.ndarray]:
    """(T, 52) -> one value per frame for each scored event type (see the module docstring)."""
    b = lambda n: bs[:, INDEX[n]]  # noqa: E731
    return {
        "blink": np.minimum(b("eyeBlinkLeft"), b("eyeBlinkRight")),
        "wink": np.abs(b("eyeBlinkLeft") - b("eyeBlinkRight")),
        "jaw_open": b("jawOpen"),
        "smile": (b("mouthSmileLeft") + b("mouthSmileRight")) / 2,
        "brows_up": np.maximum(b("browInnerUp"), (b("browOuterUpLeft") + b("browOuterUpRight")) / 2),
        "mouth_pucker": b("mouthPucker"),
    }


@dataclass
class Clip:
    name: str
    fps: float
    frames: list[np.ndarray]                 # RGB
    labels: dict
    observations: list[FaceObservation | None] = field(default_factory=list)

    def neutral_frames(self) -> np.ndarray:
        idx = [i for a, b in self.labels.get("neutral", []) for i in range(a, b + 1) if i < len(self.frames)]
        return np.array(idx, int)


def load_clips(data: Path, only: list[str] | None = None) -> list[Clip]:
    labels = json.loads((data / "labels.json").read_text(encoding="utf-8"))["clips"]
    clips = []
    for name, lab in sorted(labels.items()):
        if only and name not in only:
            continue
        cap = cv2.VideoCapture(str(data / name))
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
        if not frames:
            raise SystemExit(f"cannot read any frame of {data / name}; check the file")
        clips.append(Clip(name, float(lab.get("fps", 30.0)), frames, lab))
    return clips


def track(clip: Clip) -> None:
    """Our tracker over the clip, once, in video mode (as the daemon runs it)."""
    with FaceTracker() as tracker:
        clip.observations = [tracker.track(Frame(img, i, i / clip.fps, clip.name)) for i, img in enumerate(clip.frames)]


def estimate_states(name: str, clip: Clip, smoothing: bool, model_path: str | None = None) -> list[FaceState | None]:
    """The face state after the estimator and the signal chain per frame (None where no face was found)."""
    estimator = build_estimator(PipelineConfig(estimator=name, model_path=model_path))
    chain = SignalChain(SignalChainConfig(smoothing=smoothing))
    states: list[FaceState | None] = []
    for i, obs in enumerate(clip.observations):
        if obs is None:
            estimator.reset()
            chain.process(FaceState.neutral(face_present=False, t_capture=i / clip.fps, frame_index=i))
            states.append(None)
            continue
        states.append(chain.process(estimator.estimate(obs)))
    return states


def stack_states(states: list[FaceState | None]) -> np.ndarray:
    """(T, 52), NaN rows where no face was found."""
    out = np.full((len(states), len(ARKIT_BLENDSHAPES)), np.nan, np.float32)
    for i, state in enumerate(states):
        if state is not None and state.face_present:
            out[i] = state.blendshapes
    return out


def run_estimator(name: str, clip: Clip, smoothing: bool, model_path: str | None = None) -> np.ndarray:
    """(T, 52) after the estimator and the signal chain (NaN rows where no face was found)."""
    return stack_states(estimate_states(name, clip, smoothing, model_path))


def run_teacher(teacher, clip: Clip) -> np.ndarray:
    out = np.full((len(clip.frames), len(ARKIT_BLENDSHAPES)), np.nan, np.float32)
    for i, obs in enumerate(clip.observations):
        if obs is not None:
            h, w = obs.frame.image.shape[:2]
            out[i] = teacher(obs.landmarks[:, :2] * np.array([w, h], np.float32))
    return out


def run_peer(peer_factory, clip: Clip) -> np.ndarray:
    peer = peer_factory()
    out = np.full((len(clip.frames), len(ARKIT_BLENDSHAPES)), np.nan, np.float32)
    try:
        for i, img in enumerate(clip.frames):
            bs = peer(img, int(round(i * 1000 / clip.fps)))
            if bs is not None:
                out[i] = bs
    finally:
        peer.close()
    return out


@dataclass
class Score:
    caught: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    false_fires: dict[str, int] = field(default_factory=dict)
    neutral_frames: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, other: "Score") -> None:
        for d, o in ((self.caught, other.caught), (self.events, other.events), (self.false_fires, other.false_fires)):
            for k, v in o.items():
                d[k] = d.get(k, 0) + v
        self.neutral_frames += other.neutral_frames
        self.misses += other.misses

    @property
    def total_caught(self) -> int:
        return sum(self.caught.values())

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def frames_with_false_fire(self) -> int:
        return self.false_fires.get("_frames", 0)


def score_clip(clip: Clip, bs: np.ndarray, kinds: tuple[str, ...] | None = None) -> Score:
    """Hits and false fires of one estimator's (T, 52) on one clip (rules in the module docstring);
    ``kinds``: only these detectors (their events, their false fires), e.g. headset mode's lower face."""
    values = {k: np.nan_to_num(v, nan=0.0) for k, v in detector_values(bs).items() if kinds is None or k in kinds}
    neutral = clip.neutral_frames()
    s = Score(neutral_frames=len(neutral))
    for kind, v in values.items():
        base = float(np.median(v[neutral])) if len(neutral) else float(np.percentile(v, 10))
        level, rise = FIRE[kind]
        fires = (v >= level) & (v - base >= rise)
        for ev in clip.labels.get("events", []):
            if ev["type"] != kind:
                continue
            lo, hi = max(0, ev["start"] - SLACK_FRAMES), min(len(v) - 1, ev["end"] + SLACK_FRAMES)
            hit = bool(fires[lo:hi + 1].any())
            s.events[kind] = s.events.get(kind, 0) + 1
            s.caught[kind] = s.caught.get(kind, 0) + int(hit)
            if not hit:
                s.misses.append(f"{clip.name} {kind} {ev['start']}-{ev['end']} peak {v[lo:hi + 1].max():.2f}")
    if len(neutral):
        on = np.stack([values[k][neutral] >= FIRE[k][0] for k in values])
        for k, row in zip(values, on):
            if row.any():
                s.false_fires[k] = int(row.sum())
        s.false_fires["_frames"] = int(on.any(axis=0).sum())
    return s


def signal_check(clips: list[Clip], smoothed: list[np.ndarray], unsmoothed: list[np.ndarray]) -> dict:
    """Eye jitter drop on neutral frames and blink peaks kept by the chain (module docstring)."""
    eyes = [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]
    dev = {"on": [], "off": []}
    kept, deep_off, deep_on = [], 0, 0
    for clip, on, off in zip(clips, smoothed, unsmoothed):
        for a, b in clip.labels.get("neutral", []):
            for key, bs in (("on", on), ("off", off)):
                seg = bs[a:b + 1, eyes]
                seg = seg[~np.isnan(seg).any(1)]
                if len(seg) > 2:
                    dev[key].append(np.diff(seg, axis=0) / np.sqrt(2))
        for ev in clip.labels.get("events", []):
            if ev["type"] == "blink":
                lo, hi = max(0, ev["start"] - SLACK_FRAMES), ev["end"] + SLACK_FRAMES + 1
                p_on = np.nan_to_num(detector_values(on[lo:hi])["blink"]).max()
                p_off = np.nan_to_num(detector_values(off[lo:hi])["blink"]).max()
                if p_off > 0.1:
                    kept.append(p_on / p_off)
                deep_off += p_off > 0.8
                deep_on += p_on > 0.8
    std = {k: float(np.concatenate(v).std()) if v else float("nan") for k, v in dev.items()}
    return {"eye_jitter_off": std["off"], "eye_jitter_on": std["on"],
            "eye_jitter_drop": std["off"] / max(std["on"], 1e-9),
            "blink_peak_kept_median": float(np.median(kept)) if kept else float("nan"),
            "blink_peak_kept_min": float(np.min(kept)) if kept else float("nan"),
            "blinks_above_0.8": [int(deep_on), int(deep_off)]}


def agreement(series: list[np.ndarray], peer: list[np.ndarray]) -> dict[str, float]:
    """Per-shape Pearson r with the peer (frames where both have a face, clips pooled)."""
    a, b = np.concatenate(series), np.concatenate(peer)
    ok = ~np.isnan(a).any(1) & ~np.isnan(b).any(1)
    a, b = a[ok], b[ok]
    out = {}
    for j, name in enumerate(ARKIT_BLENDSHAPES):
        if b[:, j].std() > 0.05 and a[:, j].std() > 1e-6:
            out[name] = float(np.corrcoef(a[:, j], b[:, j])[0, 1])
        elif b[:, j].std() > 0.05:
            out[name] = 0.0
    return out


def summarise(clips: list[Clip], per_clip: list[np.ndarray], kinds: tuple[str, ...] | None = None) -> dict:
    """One estimator's scores over all clips: events caught (by type), false fires, face found, misses."""
    total = Score()
    for clip, bs in zip(clips, per_clip):
        total.add(score_clip(clip, bs, kinds))
    return {"caught": total.total_caught, "events": total.total_events,
            "hit_rate": total.total_caught / max(total.total_events, 1),
            "by_type": {k: [total.caught[k], total.events[k]] for k in total.events},
            "false_fire_frames": total.frames_with_false_fire, "neutral_frames": total.neutral_frames,
            "false_fires_by_type": {k: v for k, v in total.false_fires.items() if k != "_frames"},
            "face_found": float(np.mean(np.concatenate([~np.isnan(b).any(1) for b in per_clip]))),
            "misses": total.misses}


def evaluate(clips: list[Clip], estimators: list[str], smoothing: bool, peers: tuple[str, ...] = PEERS,
             model_paths: dict[str, str] | None = None, progress: bool = True, signal: bool = False) -> dict:
    """Run everything and score it; returns {"estimators": {name: {...}}, "clips": n, "frames": n}."""
    from rich.progress import Progress

    series: dict[str, list[np.ndarray]] = {n: [] for n in (*estimators, *peers)}
    unsmoothed: dict[str, list[np.ndarray]] = {n: [] for n in estimators}
    teacher = None
    if "teacher" in peers:
        from training.teacher import Teacher
        teacher = Teacher()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("tracking and estimating", total=len(clips))
        for clip in clips:
            track(clip)
            for name in estimators:
                series[name].append(run_estimator(name, clip, smoothing, (model_paths or {}).get(name)))
                if signal:
                    unsmoothed[name].append(run_estimator(name, clip, False, (model_paths or {}).get(name)))
            if teacher is not None:
                series["teacher"].append(run_teacher(teacher, clip))
            if "mediapipe" in peers:
                from training.teacher import TasksPeer
                series["mediapipe"].append(run_peer(TasksPeer, clip))
            bar.advance(task)
    results = {}
    for name, per_clip in series.items():
        entry = summarise(clips, per_clip)
        if "mediapipe" in series and name != "mediapipe":
            r = agreement(per_clip, series["mediapipe"])
            entry["r_with_peer"] = r
            entry["mean_r_with_peer"] = float(np.mean(list(r.values()))) if r else float("nan")
        if signal and name in unsmoothed:
            entry["signal"] = signal_check(clips, per_clip, unsmoothed[name])
        results[name] = entry
    return {"estimators": results, "clips": len(clips), "frames": sum(len(c.frames) for c in clips),
            "smoothing": smoothing, "series": series}


def print_table(report: dict, title: str = "real faces", first: str = "estimator",
                extra: dict[str, str] | None = None) -> None:
    """The side-by-side table; ``extra``: more columns, header -> the key of a preformatted string in
    each entry ("-" where an entry has none)."""
    from rich.console import Console
    from rich.table import Table

    est = report["estimators"]
    types = [t for t in SCORED_EVENTS if any(t in e["by_type"] for e in est.values())]
    peer = any("mean_r_with_peer" in e for e in est.values())
    table = Table(title=f"{title}: {report['clips']} clips, {report['frames']} frames, "
                        f"smoothing {'on' if report['smoothing'] else 'off'}")
    for col in (first, "events caught", *types, "false fires (neutral frames)", *(["mean r vs peer"] if peer else []),
                "face found", *(extra or {})):
        table.add_column(col, justify="right" if col != first else "left")
    for name, e in est.items():
        ff = ", ".join(f"{k} {v}" for k, v in e["false_fires_by_type"].items())
        table.add_row(name, f"{e['caught']}/{e['events']} ({100 * e['hit_rate']:.0f} %)",
                      *[f"{e['by_type'][t][0]}/{e['by_type'][t][1]}" if t in e["by_type"] else "-" for t in types],
                      f"{e['false_fire_frames']}/{e['neutral_frames']}" + (f" ({ff})" if ff else ""),
                      *([f"{e['mean_r_with_peer']:.2f}" if "mean_r_with_peer" in e else "-"] if peer else []),
                      f"{100 * e['face_found']:.0f} %", *[str(e.get(k, "-")) for k in (extra or {}).values()])
    console = Console()
    if not console.is_terminal:         # piped into a log or a doc: no 80-column wrap of the table
        console.width = 180
    console.print(table)


# --- headset mode on real faces (--headset) ------------------------------------------------------

# What headset mode reads (the lower face); blink and brows are under the visor and never scored here.
LOWER_FACE_EVENTS = ("jaw_open", "smile", "mouth_pucker")
HEADSET_RUNS = {"on_visor": "headset on, visor", "off_visor": "headset off (auto), visor",
                "on_clean": "headset on, no visor", "off_clean": "headset off (auto), no visor"}
UPPER_REGIONS = frozenset({"eyes", "brows"})


def visor_rng(seed: int, name: str) -> np.random.Generator:
    """The clip's visor draws: fixed by the seed and the clip's name, so one clip run alone gets the
    same visor as in the whole set."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def paint_clip(clip: Clip, seed: int) -> Clip:
    """The clip with a headset painted over the upper face of every frame (training/headset_data.py's
    paint_headset), placed from the clean frame's tracked landmarks (``clip.observations``; a frame
    the mesh missed takes the nearest fitted frame's). One visor per clip, as one headset is worn
    through a take: every frame's painter gets the same seeded draws (shape, colour, how low it sits,
    straps), so the visor moves with the head and never changes; clips differ as training's do."""
    from training.headset_data import landmarks68_from_mesh, paint_headset

    fitted = np.array([i for i, o in enumerate(clip.observations) if o is not None])
    if not len(fitted):
        raise SystemExit(f"{clip.name}: no face found on any clean frame, so there is nowhere to place a visor")
    painted = []
    for i, image in enumerate(clip.frames):
        obs = clip.observations[int(fitted[np.abs(fitted - i).argmin()])]
        l68 = landmarks68_from_mesh(obs.landmarks, image.shape[1], image.shape[0])
        painted.append(paint_headset(image, l68, visor_rng(seed, clip.name)))
    return Clip(clip.name, clip.fps, painted, clip.labels)


@dataclass
class HeadsetRun:
    """One run over one clip: (T, 52) after the chain (NaN where no face) and what the user would see
    of the rest: frames whose state sent eyes or brows as tracked, frames the mesh fitted."""

    blendshapes: np.ndarray
    upper_tracked: int
    mesh_fitted: int


def run_headset_mode(clip: Clip, smoothing: bool, lower_face_model: str | None = None) -> HeadsetRun:
    """Headset mode over the clip's frames as ``process --headset`` runs it: HeadsetTracker (mesh
    under the visor, else the held box) -> LowerFaceEstimator -> the signal chain -> untracked
    regions neutralised (runtime/pipeline.py)."""
    from avatar_bridge.runtime.pipeline import Pipeline

    pipeline = Pipeline.create(PipelineConfig(headset=True, lower_face_model=lower_face_model),
                               SignalChain(SignalChainConfig(smoothing=smoothing)))
    states, fitted = [], 0
    try:
        for i, image in enumerate(clip.frames):
            state, _ = pipeline.process(Frame(image, i, i / clip.fps, clip.name))
            states.append(state)
            fitted += int(getattr(pipeline.last_observation, "source", None) == "face")
    finally:
        pipeline.close()
    return HeadsetRun(stack_states(states), count_upper_tracked(states), fitted)


def count_upper_tracked(states: list[FaceState | None]) -> int:
    return sum(1 for s in states if s is not None and s.face_present and not UPPER_REGIONS <= s.untracked)


def run_off(clip: Clip, smoothing: bool) -> HeadsetRun:
    """The default estimator (``auto``) on the clip's tracked observations, as the user has it today."""
    states = estimate_states("auto", clip, smoothing)
    return HeadsetRun(stack_states(states), count_upper_tracked(states), sum(o is not None for o in clip.observations))


REST_LEVEL = 0.3


def rest_moved(clips: list[Clip], per_clip: list[np.ndarray], columns: list[int], level: float = REST_LEVEL) -> int:
    """Labelled neutral frames on which any of ``columns`` reaches ``level`` (a mouth at rest seen moving)."""
    return int(sum((np.nan_to_num(bs[c.neutral_frames()][:, columns]) >= level).any(1).sum()
                   for c, bs in zip(clips, per_clip)))


def evaluate_headset(clips: list[Clip], seed: int, smoothing: bool = True, progress: bool = True,
                     lower_face_model: str | None = None) -> dict:
    """Each clip with a painted visor: headset mode on, headset mode off (auto); and the clean clip
    with headset mode on and off. Only the lower-face events and false fires are scored."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from avatar_bridge.estimators.lower_face import REAL_CHECKED
    from training.headset_data import LOWER_FACE_SHAPES
    from training.teacher import TasksPeer

    unchecked = [INDEX[n] for n in LOWER_FACE_SHAPES if n not in REAL_CHECKED]

    runs: dict[str, list[HeadsetRun]] = {k: [] for k in HEADSET_RUNS}
    peer: list[np.ndarray] = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("headset mode on real faces", total=sum(len(c.frames) for c in clips) * 6)
        for clip in clips:
            # Six passes over every frame: track clean, the peer on it, paint + track painted, headset
            # mode twice, auto.
            n = len(clip.frames)
            bar.update(task, description=f"{clip.name}: tracking, the peer")
            track(clip)
            peer.append(run_peer(TasksPeer, clip))
            bar.advance(task, 2 * n)
            bar.update(task, description=f"{clip.name}: painting a visor, tracking it")
            painted = paint_clip(clip, seed)
            track(painted)
            bar.advance(task, n)
            bar.update(task, description=f"{clip.name}: headset mode")
            runs["on_visor"].append(run_headset_mode(painted, smoothing, lower_face_model))
            runs["on_clean"].append(run_headset_mode(clip, smoothing, lower_face_model))
            bar.advance(task, 2 * n)
            bar.update(task, description=f"{clip.name}: auto")
            runs["off_visor"].append(run_off(painted, smoothing))
            runs["off_clean"].append(run_off(clip, smoothing))
            bar.advance(task, n)
    results = {}
    for key, per_clip in runs.items():
        entry = summarise(clips, [r.blendshapes for r in per_clip], LOWER_FACE_EVENTS)
        found = int(sum((~np.isnan(r.blendshapes).any(1)).sum() for r in per_clip))
        # Every lower-face shape against the peer on the clean frames: the events score three detectors.
        r = {k: v for k, v in agreement([r.blendshapes for r in per_clip], peer).items() if k in LOWER_FACE_SHAPES}
        entry["r_with_peer"], entry["mean_r_with_peer"] = r, float(np.mean(list(r.values()))) if r else float("nan")
        # The shapes no real clip here shows (the point network's): a face at rest must not move them.
        entry["rest_moved"] = rest_moved(clips, [r.blendshapes for r in per_clip], unchecked)
        entry["unchecked shapes at rest"] = f"{entry['rest_moved']}/{entry['neutral_frames']}"
        entry["found_frames"] = found
        entry["upper_tracked"] = int(sum(r.upper_tracked for r in per_clip))
        entry["mesh_fitted"] = float(sum(r.mesh_fitted for r in per_clip) / sum(len(c.frames) for c in clips))
        entry["eyes/brows tracked"] = f"{entry['upper_tracked']}/{found}"
        entry["mesh fit"] = f"{100 * entry['mesh_fitted']:.0f} %"
        results[HEADSET_RUNS[key]] = entry
    return {"estimators": results, "clips": len(clips), "frames": sum(len(c.frames) for c in clips),
            "smoothing": smoothing, "seed": seed, "keys": dict(zip(HEADSET_RUNS.values(), HEADSET_RUNS))}


def main_headset(a: argparse.Namespace, command: str) -> int:
    print(f"command: {command}\nvisor seed: {a.seed} (per clip: [seed, crc32(clip name)])", flush=True)
    from avatar_bridge.estimators.registry import EstimatorError

    clips = load_clips(a.data, [c for c in a.clips.split(",") if c] or None)
    try:
        report = evaluate_headset(clips, a.seed, a.smoothing == "on", progress=sys.stderr.isatty(),
                                  lower_face_model=a.lower_face_model)
    except EstimatorError as exc:           # e.g. --lower-face-model is not a lower-face .onnx
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(report, title="headset mode on real faces (painted visor), lower-face events", first="run",
                extra={"eyes/brows sent tracked": "eyes/brows tracked", "mesh fit": "mesh fit",
                       f"other lower-face shapes >= {REST_LEVEL} at rest": "unchecked shapes at rest"})
    if a.misses:
        for name, e in report["estimators"].items():
            for m in e["misses"]:
                print(f"miss  {name:30s} {m}")
    keys = report["keys"]
    summary = {keys[n]: {k: e[k] for k in ("caught", "events", "hit_rate", "by_type", "false_fire_frames",
                                           "neutral_frames", "found_frames", "upper_tracked")}
               | {"false_fires_by_type": e["false_fires_by_type"], "face_found": round(e["face_found"], 4),
                  "mesh_fitted": round(e["mesh_fitted"], 4), "mean_r_with_peer": round(e["mean_r_with_peer"], 3),
                     "unchecked_shapes_at_rest": e["rest_moved"]}
               for n, e in report["estimators"].items()}
    print(json.dumps({"real_faces_headset": summary, "seed": a.seed, "smoothing": a.smoothing,
                      "frames": report["frames"], "command": command}))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate_real", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the clips and labels.json")
    p.add_argument("--estimators", default="neural,geometry", help="comma-separated estimator names")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="run estimator NAME with this .onnx (repeatable)")
    p.add_argument("--no-peers", action="store_true", help="skip the teacher and the MediaPipe peer")
    p.add_argument("--smoothing", choices=("on", "off"), default="on")
    p.add_argument("--clips", default="", help="comma-separated clip file names (default: all)")
    p.add_argument("--misses", action="store_true", help="list every missed event with its peak value")
    p.add_argument("--signal", action="store_true",
                   help="also run each estimator with smoothing off: eye jitter drop and blink peaks kept")
    p.add_argument("--json", type=Path, help="also write the full report here")
    p.add_argument("--headset", action="store_true",
                   help="headset mode instead: a visor painted on every frame; headset mode on and off (auto) on "
                        "the painted and the clean frames; lower-face events only (--estimators, --model, "
                        "--no-peers and --signal do not apply)")
    p.add_argument("--seed", type=int, default=16, help="--headset: the visors' seed")
    p.add_argument("--lower-face-model", metavar="PATH", help="--headset: this .onnx instead of the shipped "
                                                             "lower_face.onnx")
    a = p.parse_args(argv)
    if not (a.data / "labels.json").exists():
        print(f"error: {a.data / 'labels.json'} not found; pass --data with a folder of clips and labels.json",
              file=sys.stderr)
        return 2
    if a.headset:
        args = sys.argv[1:] if argv is None else argv
        return main_headset(a, "python -m training.evaluate_real " + " ".join(shlex.quote(x) for x in args))
    models = dict(m.split("=", 1) for m in a.model)
    clips = load_clips(a.data, [c for c in a.clips.split(",") if c] or None)
    report = evaluate(clips, [e for e in a.estimators.split(",") if e], a.smoothing == "on",
                      () if a.no_peers else PEERS, models, progress=sys.stderr.isatty(),
                      signal=a.signal and a.smoothing == "on")
    report.pop("series")
    print_table(report)
    if a.misses:
        for name, e in report["estimators"].items():
            for m in e["misses"]:
                print(f"miss  {name:10s} {m}")
    for name, e in report["estimators"].items():
        if "signal" in e:
            g = e["signal"]
            print(f"signal {name:10s} still-face eye jitter {g['eye_jitter_off']:.4f} -> {g['eye_jitter_on']:.4f} "
                  f"({g['eye_jitter_drop']:.1f}x less); blink peak kept: median {g['blink_peak_kept_median']:.2f}, "
                  f"min {g['blink_peak_kept_min']:.2f}; blinks above 0.8: {g['blinks_above_0.8'][0]} "
                  f"with smoothing, {g['blinks_above_0.8'][1]} without")
    summary = {n: {k: e[k] for k in ("caught", "events", "hit_rate", "by_type", "false_fire_frames",
                                     "neutral_frames") if k in e}
               | ({"mean_r_with_peer": round(e["mean_r_with_peer"], 3),
                     "unchecked_shapes_at_rest": e["rest_moved"]} if "mean_r_with_peer" in e else {})
               | ({"signal": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in e["signal"].items()}}
                  if "signal" in e else {})
               for n, e in report["estimators"].items()}
    print(json.dumps({"real_faces": summary, "smoothing": a.smoothing, "frames": report["frames"]}))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
