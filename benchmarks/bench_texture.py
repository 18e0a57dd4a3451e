"""What face textures cost: the generator's median time per 128x128 image (fp32 and pruned + int8,
onnxruntime, one thread), and the coefficient stream's frame time with `--texture` on vs off, side
by side in one run, alternating rounds so drift on a shared machine hits both.

    python benchmarks/bench_texture.py [--frames 240] [--rounds 2] [--estimator auto] [--texture-fps 15]

Frame time = per-frame processing in the daemon (tracking to publish, the `total` stage) and the
end-to-end latency a subscriber sees (arrival - capture time). Targets (issue 18): generator
<= 15 ms median; the stream with --texture within 10 % of without.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time

import numpy as np

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusConfig, BusSubscriber
from avatar_bridge.runtime.daemon import Daemon, DaemonConfig
from avatar_bridge.runtime.pipeline import PipelineConfig
from avatar_bridge.runtime.texture import TextureConfig
from avatar_bridge.tracking.sources import SourceConfig
from blendshape_model.texture import TextureGenerator, TextureModelConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generator_ms(int8: bool, runs: int) -> float:
    gen = TextureGenerator(TextureModelConfig(int8=int8))
    rng = np.random.default_rng(0)
    shapes = rng.uniform(0, 1, (runs, 52)).astype(np.float32) ** 2
    for s in shapes[:10]:
        gen.generate(s)
    times = []
    for s in shapes:
        t = time.perf_counter()
        gen.generate(s)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def stream_round(texture: bool, frames: int, estimator: str, fps: float) -> dict:
    bus, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cfg = DaemonConfig(source=SourceConfig(spec="demo", loop=True), pipeline=PipelineConfig(estimator=estimator),
                       bus=BusConfig(pub_endpoint=bus, control_endpoint=control), profile_dir=tempfile.mkdtemp(),
                       texture=TextureConfig(enabled=texture, fps=fps), max_frames=frames)
    daemon = Daemon(cfg)
    sub = BusSubscriber(bus, topics=(wire.TOPIC_FACE, wire.TOPIC_TEXTURE))
    time.sleep(0.5)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    latency, seqs, textures = [], [], 0
    while thread.is_alive() or len(seqs) < frames:
        got = sub.recv(500)
        if got is None:
            if not thread.is_alive():
                break
            continue
        now = time.monotonic()
        if got[0] == wire.TOPIC_FACE:
            msg = wire.decode_face_message(got[1])
            seqs.append(msg["seq"])
            latency.append((now - msg["t"]) * 1000)
        elif got[0] == wire.TOPIC_TEXTURE:
            textures += 1
    thread.join()
    sub.close()
    total = list(daemon.stats.timings.get("total", []))
    gaps = sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
    return {"frame_ms": statistics.median(total), "latency_ms": statistics.median(latency[10:]),
            "textures": textures, "faces": len(seqs), "gaps": gaps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--estimator", default="auto", help="what the stream runs (auto: the shipped default)")
    ap.add_argument("--texture-fps", type=float, default=15.0)
    ap.add_argument("--runs", type=int, default=200, help="generator calls per variant")
    args = ap.parse_args()
    print(f"generator fp32: {generator_ms(False, args.runs):.2f} ms median per 128x128 image")
    print(f"generator int8 (pruned 25 %): {generator_ms(True, args.runs):.2f} ms median")
    results: dict[bool, list[dict]] = {False: [], True: []}
    for r in range(args.rounds):
        for texture in (False, True):
            res = stream_round(texture, args.frames, args.estimator, args.texture_fps)
            results[texture].append(res)
            print(f"round {r + 1} texture {'on ' if texture else 'off'}: {res}")
    off = statistics.median(x["frame_ms"] for x in results[False])
    on = statistics.median(x["frame_ms"] for x in results[True])
    off_l = statistics.median(x["latency_ms"] for x in results[False])
    on_l = statistics.median(x["latency_ms"] for x in results[True])
    print(f"frame time (tracking..publish) median: off {off:.2f} ms, on {on:.2f} ms ({100 * (on / off - 1):+.1f} %)")
    print(f"end-to-end latency median: off {off_l:.2f} ms, on {on_l:.2f} ms ({100 * (on_l / off_l - 1):+.1f} %)")


if __name__ == "__main__":
    main()
