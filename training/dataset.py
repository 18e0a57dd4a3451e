"""The tracker cache: rendered sequences run through the daemon's own tracker, stored once and
reused by every training and evaluation run.

``generate_chunk`` renders a few sequences, degrades them (``synth.Augmenter``), and runs
``FaceTracker`` + ``HeadPoseSolver`` on each frame and on its horizontal flip (with mirrored
labels), exactly as the daemon would. A chunk is one ``.npz`` in the cache folder; existing chunks
are kept, so a run that stopped can go on and a bigger set reuses a smaller one. ``load_cache``
reads a folder back as one ``SequenceSet``. numpy only (no torch).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from blendshape_model.features import CROP_SIZE, EYE_PATCH, FEATURE_DIM, FeatureExtractor

CACHE_ROOT = Path(__file__).resolve().parents[1] / "cache" / "synth"


@dataclass(frozen=True)
class GenerateConfig:
    """One cached set. Sequence ``i`` of a set depends only on (seed, i), whatever the worker count."""

    out: str = str(CACHE_ROOT / "train")   # cache folder (existing chunks are kept)
    sequences: int = 480           # source sequences (each also tracked mirrored)
    seed: int = 0                  # sequence i depends only on (seed, i)
    frames: int = 32               # frames per sequence (30 fps)
    image_size: int = 192          # rendered frame side, pixels
    chunk: int = 4                 # sequences per cache file
    workers: int = 2               # render + track processes
    flip: bool = True              # also track the mirrored image (labels mirrored)
    # More of these shows the network the rarely used shapes more often, in combinations.
    free_shapes: int = 5           # shapes moving on their own tracks: 1 to this many per sequence


@dataclass
class SequenceSet:
    """Cached sequences, all (S, T, ...) with S = sequences (flips included), T = frames."""

    crops: np.ndarray              # (S, T, 96, 96, 3) uint8
    features: np.ndarray           # (S, T, FEATURE_DIM) float32 (see blendshape_model.features)
    eyes: np.ndarray               # (S, T, 2, *EYE_PATCH, 3) uint8 eye patches cut from the crops
    found: np.ndarray              # (S, T) bool: the tracker found the face
    blendshapes: np.ndarray        # (S, T, 52) truth
    gaze: np.ndarray               # (S, T, 4) truth, radians (left yaw, pitch, right yaw, pitch)
    head_quat: np.ndarray          # (S, T, 4) truth (x, y, z, w)
    pnp_rot: np.ndarray            # (S, T, 3, 3) what the PnP solver said, head -> camera
    landmarks: np.ndarray          # (S, T, 478, 3) raw tracker output (for the geometry baseline)
    crop_transform: np.ndarray     # (S, T, 2, 3) image px -> crop px, as the tracker returned it
    image_size: tuple[int, int]
    seq_id: np.ndarray             # (S,) source sequence index
    flipped: np.ndarray            # (S,) bool

    def __len__(self) -> int:
        return len(self.crops)


# --- generation (runs in worker processes) -----------------------------------------------------

_worker: dict = {}   # per-process renderer/trackers, built once by _init_worker (processes share nothing)


def _init_worker(image_size: int) -> None:
    os.environ.setdefault("LP_NUM_THREADS", "1")   # llvmpipe: one thread per worker process
    from training.render import FaceModel, Renderer
    _worker["renderer"] = Renderer(image_size, image_size, model=FaceModel.load())


def _track_sequence(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    from avatar_bridge.tracking.head_pose import HeadPoseSolver
    from avatar_bridge.tracking.tracker import FaceTracker, TrackerConfig
    from avatar_bridge.types import Frame

    T = len(images)
    out = dict(crop=np.zeros((T, CROP_SIZE, CROP_SIZE, 3), np.uint8), landmarks=np.zeros((T, 478, 3), np.float32),
               crop_transform=np.zeros((T, 2, 3), np.float32), found=np.zeros(T, bool),
               pnp_rot=np.tile(np.eye(3, dtype=np.float32), (T, 1, 1)))
    solver = HeadPoseSolver()
    with FaceTracker(TrackerConfig(crop_size=CROP_SIZE)) as tracker:   # fresh per sequence: video mode
        for k, img in enumerate(images):
            obs = tracker.track(Frame(img, k, k / 30.0, "synth"))
            if obs is None:
                solver.reset()
                continue
            pose = solver.solve(obs.landmarks, img.shape[1], img.shape[0])
            out["crop"][k], out["landmarks"][k], out["crop_transform"][k] = obs.crop, obs.landmarks, obs.crop_transform
            out["pnp_rot"][k], out["found"][k] = pose.matrix, True
    return out


def generate_chunk(job: tuple[dict, int]) -> tuple[int, int, int]:
    """Render, augment and track sequences [first, first + chunk); write one npz. Returns
    (chunk index, frames written, faces found)."""
    from avatar_bridge.signal.mirror import mirror_labels
    from training.synth import Augmenter, SequenceConfig, sample_sequence

    cfg_dict, index = job
    cfg = GenerateConfig(**cfg_dict)
    path = Path(cfg.out) / f"chunk_{index:05d}.npz"
    if path.exists():
        with np.load(path) as d:
            return index, int(d["found"].size), int(d["found"].sum())
    renderer = _worker["renderer"]
    seqs: dict[str, list] = {}
    first = index * cfg.chunk
    for i in range(first, min(first + cfg.chunk, cfg.sequences)):
        rng = np.random.default_rng([cfg.seed, i])
        params = sample_sequence(rng, SequenceConfig(frames=cfg.frames, max_free_shapes=cfg.free_shapes))
        augment = Augmenter(rng)
        images, labels = [], dict(blendshapes=[], gaze=[], head_quat=[], head_pos=[])
        for p in params:
            r = renderer.render(p)
            images.append(augment(r.image, r.landmarks68))
            labels["blendshapes"].append(r.blendshapes)
            labels["gaze"].append([*r.gaze_left, *r.gaze_right])
            labels["head_quat"].append(r.head_rotation)
            labels["head_pos"].append(r.head_position)
        labels = {k: np.asarray(v, np.float32) for k, v in labels.items()}
        variants = [(images, labels, False)]
        if cfg.flip:
            m = mirror_labels(labels["blendshapes"], labels["gaze"], labels["head_quat"], labels["head_pos"])
            variants.append(([np.ascontiguousarray(im[:, ::-1]) for im in images],
                             dict(zip(("blendshapes", "gaze", "head_quat", "head_pos"), m)), True))
        for imgs, lab, flipped in variants:
            tracked = _track_sequence(imgs)
            for k, v in {**tracked, **lab, "seq_id": i, "flipped": flipped}.items():
                seqs.setdefault(k, []).append(v)
    arrays = {k: np.stack(v) for k, v in seqs.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, image_size=np.array([cfg.image_size, cfg.image_size]), **arrays)
    tmp.rename(path)
    return index, int(arrays["found"].size), int(arrays["found"].sum())


def generate(cfg: GenerateConfig, progress: bool = True) -> dict:
    """Fill ``cfg.out`` with chunks (skipping those already there) using ``cfg.workers`` processes."""
    import multiprocessing as mp
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())["config"]
        keep = ("seed", "frames", "image_size", "chunk", "flip", "free_shapes")
        old.setdefault("free_shapes", GenerateConfig.free_shapes)     # sets made before the setting existed
        if any(old[k] != asdict(cfg)[k] for k in keep):
            raise ValueError(f"{out} holds a set made with {{{', '.join(f'{k}={old[k]}' for k in keep)}}}; "
                             "use another --out or the same settings")
    n_chunks = -(-cfg.sequences // cfg.chunk)
    jobs = [(asdict(cfg), i) for i in range(n_chunks)]
    frames = found = 0
    t0 = time.time()
    ctx = mp.get_context("spawn")     # fresh GL and MediaPipe state in every worker
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg.image_size,)) as pool, \
            Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                     TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("chunks", total=n_chunks)
        for _, f, k in pool.imap_unordered(generate_chunk, jobs):
            frames, found = frames + f, found + k
            bar.advance(task)
    summary = dict(config=asdict(cfg), frames=frames, faces_found=found, face_rate=found / max(frames, 1),
                   seconds=round(time.time() - t0, 1))
    meta_path.write_text(json.dumps(summary, indent=2))
    return summary


# --- reading -----------------------------------------------------------------------------------

def load_cache(folders: str | Path, max_sequences: int | None = None) -> SequenceSet:
    """Read every chunk in ``folders`` (one folder, or several joined by commas, in order) into one
    SequenceSet. Sequence ids are offset per folder so they stay unique across sets."""
    parts: dict[str, list] = {}
    image_size = frames = None
    offset = 0
    for folder in str(folders).split(","):
        paths = [p for p in sorted(Path(folder).glob("chunk_*.npz")) if not p.name.endswith(".tmp.npz")]
        if not paths:
            raise FileNotFoundError(f"no cached chunks in {folder}; run `python -m training.generate --out {folder}` first")
        first_id = offset
        for p in paths:
            if max_sequences and sum(len(x) for x in parts.get("crop", [])) >= max_sequences:
                break
            with np.load(p) as d:
                size = tuple(int(x) for x in d["image_size"])
                if image_size and size != image_size:
                    raise ValueError(f"{p} was rendered at {size}, the sets before it at {image_size}")
                image_size = size
                length = d["found"].shape[1]                 # sequences are stacked (S, T, ...)
                if frames and length != frames:
                    raise ValueError(f"{p} holds {length}-frame sequences, the sets before it {frames}-frame "
                                     "ones; join only sets generated with the same --frames")
                frames = length
                for k in ("crop", "landmarks", "crop_transform", "found", "pnp_rot", "blendshapes", "gaze",
                          "head_quat", "flipped"):
                    parts.setdefault(k, []).append(d[k])
                parts.setdefault("seq_id", []).append(d["seq_id"] + first_id)
                offset = max(offset, int(d["seq_id"].max()) + first_id + 1)
    a = {k: np.concatenate(v)[:max_sequences] for k, v in parts.items()}
    S, T = a["found"].shape
    # Features and eye patches are derived here, not cached, so a change to them needs no re-render.
    feats = np.zeros((S, T, FEATURE_DIM), np.float32)
    eyes = np.zeros((S, T, 2, *EYE_PATCH, 3), np.uint8)
    extract = FeatureExtractor()
    for s, t in zip(*np.nonzero(a["found"])):
        feats[s, t], eyes[s, t] = extract(a["landmarks"][s, t], a["crop"][s, t], a["crop_transform"][s, t],
                                          image_size, a["pnp_rot"][s, t])
    return SequenceSet(crops=a["crop"], features=feats, eyes=eyes, found=a["found"], blendshapes=a["blendshapes"],
                       gaze=a["gaze"], head_quat=a["head_quat"], pnp_rot=a["pnp_rot"], landmarks=a["landmarks"],
                       crop_transform=a["crop_transform"], image_size=image_size, seq_id=a["seq_id"], flipped=a["flipped"])
