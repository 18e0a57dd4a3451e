"""Engine plugins: the C++ (Unreal) and C# (Unity) reference subscribers, compiled here with the real
compilers and run against a live daemon and a hand-made publisher of bad packets."""

from __future__ import annotations

import json
import dataclasses
import math
import random
import shutil
import subprocess
import threading

import msgpack
import numpy as np
import pytest
import zmq

from avatar_bridge import conventions

from avatar_bridge.bus import wire
from avatar_bridge.arkit import ARKIT_BLENDSHAPES, NAMES_HASH
from avatar_bridge.bus.sockets import BusSubscriber
from avatar_bridge.types import FaceState
from helpers import ROOT, free_port, start_daemon, stop, wait_for


CPP_DIR = ROOT / "engine_plugins" / "cpp"
UNITY_DIR = ROOT / "engine_plugins" / "unity"
CPP_PACKAGES = "cmake g++ libzmq3-dev cppzmq-dev libmsgpack-cxx-dev"
CSHARP_PACKAGES = "mono-mcs mono-runtime libzmq5"


def _require_tools(tools: tuple[str, ...], packages: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; .ci/run installs the apt packages {packages}")


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({' '.join(map(str, cmd))}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def cpp_listener(tmp_path_factory) -> list[str]:
    """avatar_bridge_listen built with cmake + g++ from engine_plugins/cpp, once for this module."""
    _require_tools(("cmake", "g++"), CPP_PACKAGES)
    build = tmp_path_factory.mktemp("cpp-build")
    _run(["cmake", "-S", str(CPP_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
          "-DCMAKE_CXX_FLAGS=-Werror"], "cmake configure")
    _run(["cmake", "--build", str(build)], "cmake build")
    return [str(build / "avatar_bridge_listen")]


@pytest.fixture(scope="module")
def csharp_listener(tmp_path_factory) -> list[str]:
    """AvatarBridgeListen.exe built with mcs (AvatarBridgeFace.cs included: it must compile out) and run by mono."""
    _require_tools(("mcs", "mono"), CSHARP_PACKAGES)
    exe = tmp_path_factory.mktemp("cs-build") / "AvatarBridgeListen.exe"
    _run(["mcs", "-warnaserror", f"-out:{exe}", "AvatarBridgeClient.cs", "AvatarBridgeListen.cs", "AvatarBridgeFace.cs"],
         "mcs", cwd=UNITY_DIR)
    return ["mono", str(exe)]


@pytest.fixture(params=["cpp", "csharp"])
def listener(request) -> list[str]:
    return request.getfixturevalue(f"{request.param}_listener")


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _f32(values) -> np.ndarray:
    return np.asarray(values, np.float64).astype(np.float32)


def _assert_same_face(plugin: dict, sent: dict) -> None:
    """The plugin's JSON equals the decoded message: float32 fields bit for bit, t as float64."""
    where = f"seq {sent['seq']}"
    assert plugin["seq"] == sent["seq"]
    assert plugin["t"] == sent["t"], where
    assert plugin["present"] is sent["present"], where
    for got, want in ((plugin["bs"], sent["bs"]), (plugin["head"]["q"], sent["head"]["q"]),
                      (plugin["head"]["p"], sent["head"]["p"]), (plugin["gaze"]["l"], sent["gaze"]["l"]),
                      (plugin["gaze"]["r"], sent["gaze"]["r"]), ([plugin["conf"]], [sent["conf"]])):
        np.testing.assert_array_equal(_f32(got), _f32(want), err_msg=where)


def test_listener_receives_exactly_what_the_daemon_sent(listener, endpoints):
    n = 45
    bus, control = endpoints
    proc = start_daemon("--bus", bus, "--control", control)
    sub = BusSubscriber(bus)
    seen: dict[int, dict] = {}
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            got = sub.recv(100)
            if got and got[0] == wire.TOPIC_FACE:
                msg = wire.decode_face_message(got[1])
                seen[msg["seq"]] = msg

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        # Start the plugin only once Python receives, so Python sees every seq the plugin sees.
        wait_for(lambda: seen, timeout=30)
        plugin = subprocess.run([*listener, "--bus", bus, "--count", str(n), "--timeout-ms", "30000"],
                                capture_output=True, text=True, timeout=60)
        last = max((m["seq"] for m in _lines(plugin.stdout)), default=None)
        if last is not None:  # Python may trail the plugin by a message or two
            wait_for(lambda: last in seen, timeout=5)
    finally:
        done.set()
        reader.join(timeout=5)
        sub.close()
        daemon_out = stop(proc)
    assert plugin.returncode == 0, plugin.stderr + daemon_out
    got = _lines(plugin.stdout)
    assert len(got) == n
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + n)), "a plugin that keeps up sees every seq"
    assert json.loads(plugin.stderr.splitlines()[-1]) == {"received": n, "malformed": 0}
    assert set(seqs) <= set(seen), f"the Python subscriber missed seqs the plugin saw: {sorted(set(seqs) - set(seen))}"
    for m in got:
        _assert_same_face(m, seen[m["seq"]])
    assert any(m["present"] for m in got), "the demo face was tracked"


# --- malformed packets ---------------------------------------------------------------------------

def _state(seed: int) -> FaceState:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    return FaceState(blendshapes=rng.random(52, dtype=np.float32), head_rotation=tuple(q / np.linalg.norm(q)),
                     head_position=tuple(rng.normal(size=3) * 0.1 + (0, 0, -0.6)), gaze_left=tuple(rng.normal(size=2) * 0.2),
                     gaze_right=tuple(rng.normal(size=2) * 0.2), confidence=0.875, face_present=bool(seed % 2),
                     t_capture=1234.5 + seed / 30, t_publish=1234.51 + seed / 30, frame_index=seed)


def _with(seed: int, **changes) -> bytes:
    """A schema-v1 payload with some keys replaced (or removed, with value ...)."""
    msg = wire.face_to_message(_state(seed), seed)
    for key, value in changes.items():
        if value is ...:
            msg.pop(key)
        else:
            msg[key] = value
    return msgpack.packb(msg, use_single_float=True)


def _good_payloads() -> list[bytes]:
    state = _state(7)
    float64 = msgpack.packb(wire.face_to_message(_state(8), 8), use_single_float=False)
    unknown_keys = dict(reversed(list(wire.face_to_message(_state(9), 9).items())))   # other key order, too
    unknown_keys.update({"future": {"x": [1, 2, {"deep": None}]}, "note": "héllo", "blob": b"\x00\xff", "n": -5})
    ints = wire.face_to_message(_state(10), 10)
    ints["bs"] = [0, 1] + ints["bs"][2:]
    ints["conf"] = 1
    # Headset mode's optional "tracked" mask (docs/protocol.md): readers that do not know it skip it.
    headset = wire.encode_face(dataclasses.replace(_state(11), untracked=frozenset({"eyes", "gaze", "brows"})), 11)
    assert b"tracked" in headset
    return [wire.encode_face(state, 7), float64, msgpack.packb(unknown_keys, use_single_float=True),
            msgpack.packb(ints, use_single_float=True), headset]


def _bad_payloads() -> dict[str, bytes]:
    good = wire.encode_face(_state(3), 3)
    head = wire.face_to_message(_state(3), 3)["head"]
    return {
        "garbage": b"\xc1 this is not msgpack",
        "empty": b"",
        "truncated": good[:-5],
        "trailing bytes": good + b"\x00",
        "not a map": msgpack.packb([1, 2, 3]),
        "array of 4e9 elements": b"\xdd\xff\xff\xff\xff",
        "wrong names_hash": _with(3, names_hash=NAMES_HASH ^ 1),
        "schema v2": _with(3, v=2),
        "no v": _with(3, v=...),
        "no seq": _with(3, seq=...),
        "float seq": _with(3, seq=1.5),
        "int present": _with(3, present=1),
        "51 shapes": _with(3, bs=[0.5] * 51),
        "NaN shape": _with(3, bs=[math.nan] + [0.5] * 51),
        "bool shape": _with(3, bs=[True] + [0.5] * 51),
        "string shape": _with(3, bs=["0.5"] + [0.5] * 51),
        "head is a list": _with(3, head=[head["q"], head["p"]]),
        "3-float q": _with(3, head={"q": head["q"][:3], "p": head["p"]}),
        "no gaze": _with(3, gaze=...),
        "string conf": _with(3, conf="high"),
        "bad UTF-8 in an unknown key": _with(3, note="x").replace(b"\xa4note\xa1x", b"\xa4note\xa1\xff"),
    }


def test_bad_packet_corpus_is_refused_by_the_python_reference_too():
    """The plugins are held to wire.py: every bad payload below must be refused there as well."""
    accepted = []
    for name, payload in _bad_payloads().items():
        try:
            wire.decode_face_message(payload)
            accepted.append(name)
        except wire.WireError:
            pass
    assert not accepted, f"wire.py accepts these 'bad' payloads: {accepted}"
    for payload in _good_payloads():
        wire.decode_face_message(payload)


def test_listener_skips_malformed_messages_counts_them_and_prints_the_good_ones(listener):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)  # XPUB: we see the plugin's subscription arrive, so nothing is sent too early
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    bad, good = _bad_payloads(), _good_payloads()
    proc = subprocess.Popen([*listener, "--bus", endpoint, "--count", str(len(good)), "--timeout-ms", "10000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert pub.poll(20000), "the plugin never subscribed"
        assert pub.recv() == b"\x01face"
        bad_frames = [[b"face"], [b"face", good[0], b"third frame"]]   # wrong multipart shape
        messages = [[b"face", p] for p in bad.values()] + bad_frames
        random.Random(0).shuffle(messages)
        messages.insert(3, [b"face", good[0]])
        messages.insert(9, [b"face", good[1]])
        messages.insert(15, [b"faces", good[0]])   # another topic that the "face" prefix lets through: ignored
        messages.insert(16, [b"status", msgpack.packb({"v": 1})])   # not subscribed at all
        messages += [[b"face", g] for g in good[2:]]
        for parts in messages:
            pub.send_multipart(parts)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pub.close()
    assert proc.returncode == 0, err
    printed = _lines(out)
    assert len(printed) == len(good)
    for line, payload in zip(printed, good):
        _assert_same_face(line, wire.decode_face_message(payload))
    reports = _lines(err)
    n_bad = len(bad) + len(bad_frames)
    assert sum(1 for r in reports if set(r) == {"malformed"}) == n_bad, err
    assert reports[-1] == {"received": len(good), "malformed": n_bad}
    assert any("names_hash" in r.get("malformed", "") for r in reports)
    assert any("version" in r.get("malformed", "") for r in reports)


# --- conventions and the name table ------------------------------------------------------------------

def _poses() -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    rng = np.random.default_rng(1)
    poses = [((0.0, 0.0, 0.0, 1.0), (0.0, 0.0, -0.5)),
             (conventions.from_yaw_pitch_roll(math.radians(30), 0, 0), (0.1, -0.05, -0.6)),
             (conventions.from_yaw_pitch_roll(0.2, -0.3, 0.1), (-0.02, 0.03, -0.45))]
    for _ in range(20):
        q = rng.normal(size=4)
        poses.append((tuple(float(c) for c in q / np.linalg.norm(q)), tuple(float(c) for c in rng.normal(size=3))))
    return poses


@pytest.mark.parametrize("engine, convert", [("cpp", conventions.to_unreal), ("csharp", conventions.to_unity)])
def test_pose_conversion_matches_conventions(engine, convert, request):
    command = request.getfixturevalue(f"{engine}_listener")
    poses = _poses()
    text = "".join(" ".join(f"{c:.17g}" for c in (*q, *p)) + "\n" for q, p in poses)
    result = subprocess.run([*command, "--convert"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    key = "unreal" if engine == "cpp" else "unity"
    got = [line[key] for line in _lines(result.stdout)]
    assert len(got) == len(poses)
    for (q, p), g in zip(poses, got):
        want_q, want_p = convert(q, p)
        np.testing.assert_allclose(g["q"], want_q, rtol=0, atol=1e-15)
        np.testing.assert_allclose(g["p"], want_p, rtol=0, atol=1e-12)


def test_name_table_matches_arkit_blendshapes(listener):
    result = subprocess.run([*listener, "--names"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    if isinstance(table, dict):   # the C# listener also reports the CRC it computes at run time
        assert table["hash"] == NAMES_HASH
        table = table["names"]
    assert tuple(table) == ARKIT_BLENDSHAPES   # the C++ header static_asserts its CRC at compile time


def test_unity_component_type_checks_against_the_unity_api(tmp_path):
    """AvatarBridgeFace.cs only compiles inside Unity; check it against a stub of the UnityEngine types it uses."""
    _require_tools(("mcs",), CSHARP_PACKAGES)
    _run(["mcs", "-warnaserror", "-target:library", "-define:UNITY_5_3_OR_NEWER", f"-out:{tmp_path / 'face.dll'}",
          "AvatarBridgeClient.cs", "AvatarBridgeFace.cs", "tests/UnityEngineStub.cs"], "mcs (Unity build)", cwd=UNITY_DIR)
