"""Hostile input against a real daemon (issue 14, daemon side): the control socket, record.start paths,
stopping recordings, and config files. Every hostile input is a fixture; every check is a real process,
real ZeroMQ sockets and real files."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusConfig, BusError, BusSubscriber, ControlServer, control_request
from avatar_bridge.takes.format import read_take

from avatar_bridge.signal.chain import SignalChainConfig
from helpers import cli, free_port, hermetic_env, recv_face, stop, wait_for


# --- a real daemon, its output in a file so the test can read the log while it runs ----------------


class RunningDaemon:
    """``avatar-bridge run`` as a subprocess with its own takes folder, HOME and log file."""

    def __init__(self, root: Path, *args: str, preexec=None) -> None:
        self.root = root
        self.bus, self.control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.takes = root / "takes"
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "daemon.log"
        self.proc = subprocess.Popen(
            cli("run", "--bus", self.bus, "--control", self.control, "--takes-dir", str(self.takes),
                "--estimator", "geometry", *args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=hermetic_env(HOME=str(self.home)),
            preexec_fn=preexec)
        # The test writes the log file, not the daemon: one test forbids the daemon every file write.
        self._copier = threading.Thread(target=self._copy_log, daemon=True)
        self._copier.start()
        wait_for(self.answers, timeout=60)

    def _copy_log(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited: {self.log()}")
        try:
            return control_request({"cmd": "ping"}, self.control, timeout_ms=500)["ok"]
        except TimeoutError:
            return False

    def request(self, req: dict, timeout_ms: int = 5000) -> dict:
        return control_request(req, self.control, timeout_ms=timeout_ms)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def faces_flow(self, n: int = 5) -> list[int]:
        """Seqs of the next ``n`` face messages (fails if they do not come)."""
        sub = BusSubscriber(self.bus)
        try:
            seqs, deadline = [], time.monotonic() + 20
            while len(seqs) < n and time.monotonic() < deadline:
                got = sub.recv(200)
                if got and got[0] == wire.TOPIC_FACE:
                    seqs.append(wire.decode_face(got[1])[0])
            return seqs
        finally:
            sub.close()

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._copier.join(5)
        return self.log()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = RunningDaemon(tmp_path_factory.mktemp("daemon"))
    yield d
    d.close()


def raw_request(endpoint: str, parts: list[bytes], timeout_ms: int = 5000) -> tuple[dict, int]:
    """Send ``parts`` as one (possibly multipart) request; return the decoded reply and its size in bytes."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(parts)
        assert sock.poll(timeout_ms), "the control socket must answer every request"
        reply = sock.recv()
        return msgpack.unpackb(reply), len(reply)
    finally:
        sock.close()


# --- 1. the control socket answers everything ---------------------------------------------------

HOSTILE_REQUESTS = {
    "multipart": [msgpack.packb({"cmd": "ping"}), b"x"],
    "multipart-three": [b"", b"", msgpack.packb({"cmd": "status"})],
    "empty": [b""],
    "10MB": [b"\x81\xa3cmd" + b"x" * 10_000_000],
    "10MB-command-name": [msgpack.packb({"cmd": "c" * 10_000_000})],
    "60KB-command-name": [msgpack.packb({"cmd": "c" * 60_000})],   # under the size cap: answered, not echoed
    "not-msgpack": [b"\xc1\xc1\xc1"],
    "a-list": [msgpack.packb([1, 2, 3])],
}


@pytest.fixture(params=sorted(HOSTILE_REQUESTS))
def hostile_request(request) -> list[bytes]:
    return HOSTILE_REQUESTS[request.param]


def test_hostile_control_request_gets_a_short_error_reply_and_faces_keep_flowing(daemon, hostile_request):
    before = daemon.request({"cmd": "status"})["frames_published"]
    reply, size = raw_request(daemon.control, hostile_request)
    assert reply["ok"] is False and isinstance(reply["error"], str)
    assert size < 2000, "a reply never echoes the request back"
    assert daemon.request({"cmd": "ping"})["pong"] is True, "the socket still answers the next client"
    seqs = daemon.faces_flow(5)
    assert len(seqs) == 5 and seqs[0] >= before, "faces keep flowing"


def test_a_thousand_bad_requests_log_a_few_short_lines_not_megabytes(daemon):
    log_before = daemon.log_path.stat().st_size
    errors_before = daemon.request({"cmd": "status"})["control_errors"]
    sock = zmq.Context.instance().socket(zmq.DEALER)   # many requests in flight, each answered in turn
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.control)
    try:
        for _ in range(1000):
            sock.send_multipart([b"", msgpack.packb({"cmd": "x" * 5000})])
        replies = 0
        while replies < 1000 and sock.poll(10000):
            _, payload = sock.recv_multipart()
            assert msgpack.unpackb(payload)["ok"] is False
            replies += 1
    finally:
        sock.close()
    assert replies == 1000
    status = daemon.request({"cmd": "status"})
    assert status["control_errors"] - errors_before == 1000, "every bad request is still counted"
    grown = daemon.log_path.stat().st_size - log_before
    print(f"1,000 bad requests grew the log by {grown} bytes")
    assert grown < 5000, f"the log grew by {grown} bytes"
    assert "x" * 200 not in daemon.log(), "no request is logged whole"


def test_control_socket_beyond_loopback_needs_a_token_and_checks_it():
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    with pytest.raises(BusError, match="--control-token"):
        ControlServer(BusConfig(control_endpoint=endpoint), {})
    server = ControlServer(BusConfig(control_endpoint=endpoint, control_token="open sesame"),
                           {"ping": lambda req: {"pong": True}})
    done = threading.Event()
    thread = threading.Thread(target=lambda: [server.poll_once(20) for _ in iter(done.is_set, True)])
    thread.start()
    try:
        local = endpoint.replace("0.0.0.0", "127.0.0.1")
        refused = control_request({"cmd": "ping"}, local)
        wrong = control_request({"cmd": "ping"}, local, token="guess")
        right = control_request({"cmd": "ping"}, local, token="open sesame")
    finally:
        done.set()
        thread.join(5)
        server.close()
    assert not refused["ok"] and "token" in refused["error"]
    assert not wrong["ok"] and "token" in wrong["error"]
    assert right == {"ok": True, "pong": True}


def test_run_refuses_a_control_socket_beyond_loopback_without_a_token():
    result = subprocess.run(cli("run", "--control", f"tcp://0.0.0.0:{free_port()}",
                                "--bus", f"tcp://127.0.0.1:{free_port()}", "--estimator", "geometry"),
                            capture_output=True, text=True, timeout=120, env=hermetic_env())
    assert result.returncode == 1
    assert "--control-token" in result.stderr and "Traceback" not in result.stderr + result.stdout


# --- 2. record.start writes only into the takes folder --------------------------------------------

OUTSIDE_NAMES = {"dotdot": "../x.abr", "absolute": "/tmp/x.abr", "home": "~/x.abr", "nested": "sub/x.abr",
                 "backslash": "..\\x.abr", "hidden": ".x.abr", "dot": ".", "empty": "", "nul": "x\x00.abr"}
NON_STRINGS = {"int": 123, "list": ["x.abr"], "map": {"x": 1}, "bytes": b"x.abr", "bool": True}


@pytest.fixture(params=sorted(OUTSIDE_NAMES) + sorted(NON_STRINGS))
def hostile_path(request):
    return OUTSIDE_NAMES.get(request.param, NON_STRINGS.get(request.param))


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_record_start_with_a_path_outside_the_takes_folder_is_refused(daemon, hostile_path, tmp_path):
    before = _tree(daemon.root)
    unique = f"/tmp/ab-escape-{os.getpid()}.abr"
    path = unique if hostile_path == "/tmp/x.abr" else hostile_path
    reply = daemon.request({"cmd": "record.start", "path": path})
    assert reply["ok"] is False and ("plain file name" in reply["error"] or "string" in reply["error"]), reply
    assert daemon.request({"cmd": "record.status"})["recording"] is False
    assert _tree(daemon.root) == before, "no file appeared anywhere under the daemon's folders"
    assert not Path(unique).exists() and not (daemon.home / "x.abr").exists()
    assert not (daemon.root / "x.abr").exists()


def test_record_start_into_a_fifo_is_refused_and_the_frame_loop_never_waits(daemon):
    daemon.takes.mkdir(exist_ok=True)
    fifo = daemon.takes / "pipe.abr"
    os.mkfifo(fifo)
    try:
        for overwrite in (False, True):
            reply = daemon.request({"cmd": "record.start", "path": "pipe.abr", "overwrite": overwrite},
                                   timeout_ms=3000)
            assert reply["ok"] is False and ("FIFO" in reply["error"] or "exists" in reply["error"]), reply
        assert len(daemon.faces_flow(5)) == 5
    finally:
        fifo.unlink()


def test_overwrite_never_follows_a_link_and_never_replaces_without_being_asked(daemon):
    daemon.takes.mkdir(exist_ok=True)
    bashrc = daemon.home / ".bashrc"
    bashrc.write_text("export PATH=precious\n")
    (daemon.takes / "link.abr").symlink_to(bashrc)
    (daemon.takes / "old.abr").write_bytes(b"an earlier take")
    try:
        linked = daemon.request({"cmd": "record.start", "path": "link.abr", "overwrite": True})
        kept = daemon.request({"cmd": "record.start", "path": "old.abr"})
        odd = daemon.request({"cmd": "record.start", "path": "old.abr", "overwrite": "yes"})
    finally:
        (daemon.takes / "link.abr").unlink()
    assert not linked["ok"] and "symbolic link" in linked["error"]
    assert bashrc.read_text() == "export PATH=precious\n"
    assert not kept["ok"] and "already exists" in kept["error"]
    assert not odd["ok"] and "true or false" in odd["error"]
    assert (daemon.takes / "old.abr").read_bytes() == b"an earlier take"


def test_a_plain_name_records_into_the_takes_folder(daemon):
    reply = daemon.request({"cmd": "record.start", "path": "ok.abr"})
    assert reply["ok"] and Path(reply["path"]) == (daemon.takes / "ok.abr").resolve()
    time.sleep(1.0)
    stopped = daemon.request({"cmd": "record.stop"}, timeout_ms=10000)
    take = read_take(daemon.takes / "ok.abr")
    assert stopped["ok"] and len(take) == stopped["frames"] > 10 and take.end is not None


def _no_file_writes() -> None:
    # Every write to a regular file fails with EFBIG (Python ignores SIGXFSZ), like a full disk would.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_two_thousand_failing_record_starts_leave_the_open_file_count_flat(tmp_path):
    d = RunningDaemon(tmp_path, preexec=_no_file_writes)
    d.takes.mkdir(exist_ok=True)
    os.mkfifo(d.takes / "fifo.abr")
    requests = [{"cmd": "record.start", "path": "take.abr"},                 # the first write fails
                {"cmd": "record.start", "path": "fifo.abr", "overwrite": True},
                {"cmd": "record.start", "path": "../x.abr"},
                {"cmd": "record.start", "path": 7}]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(d.control)

    def burst(n: int) -> list[dict]:
        for i in range(n):
            sock.send_multipart([b"", msgpack.packb(requests[i % len(requests)])])
        replies = []
        while len(replies) < n and sock.poll(10000):
            replies.append(msgpack.unpackb(sock.recv_multipart()[1]))
        return replies

    try:
        warm = burst(40)   # libraries and sockets opened on first use are not leaks
        before = d.open_fds()
        replies = burst(2000)
        after = d.open_fds()
        flowing = d.faces_flow(5)
    finally:
        sock.close()
        out = d.close()
    assert len(warm) == 40 and len(replies) == 2000
    assert not any(r["ok"] for r in replies)
    assert any("cannot write" in r["error"] for r in replies), replies[:4]
    print(f"open fds: {before} before 2,000 failing record.start, {after} after")
    assert after <= before, f"{after - before} file descriptors leaked"
    assert sorted(p.name for p in d.takes.iterdir()) == ["fifo.abr"], "a failed start leaves no empty take behind"
    assert len(flowing) == 5, out


# --- 3. stopping recordings ------------------------------------------------------------------------


@pytest.fixture(params=["SIGINT", "SIGHUP"])
def stop_signal(request) -> signal.Signals:
    return getattr(signal, request.param)


def test_record_stops_on_a_signal_during_a_30fps_stream_with_a_clean_take(daemon, stop_signal, tmp_path):
    take = tmp_path / "signal.abr"
    proc = subprocess.Popen(cli("record", str(take), "--bus", daemon.bus, "--control", daemon.control),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=hermetic_env())
    try:
        assert "recording" in proc.stdout.readline()
        wait_for(lambda: take.stat().st_size > 20_000, timeout=20)   # ~2 s of frames flushed
        sent = time.monotonic()
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=10)
        print(f"record exited {time.monotonic() - sent:.3f} s after {stop_signal.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    t = read_take(take)
    printed = int(re.search(r"wrote (\d+) frames", out).group(1))
    assert t.end is not None, "the take has its end record"
    assert printed == len(t) == t.end["frames"], out
    seqs = [f.seq for f in t.frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no frame lost"


def test_sighup_closes_the_daemons_own_recording(tmp_path):
    d = RunningDaemon(tmp_path)
    try:
        assert d.request({"cmd": "record.start", "path": "hup.abr"})["ok"]
        wait_for(lambda: (d.takes / "hup.abr").stat().st_size > 5_000, timeout=20)
        d.proc.send_signal(signal.SIGHUP)
        d.proc.wait(timeout=15)
    finally:
        out = d.close()
    assert d.proc.returncode == 0, out
    t = read_take(d.takes / "hup.abr")
    assert t.end is not None and t.end["frames"] == len(t) > 0


# --- 7. config files -------------------------------------------------------------------------------


def test_config_file_values_reach_the_daemon_and_a_given_flag_overrides_them(tmp_path):
    control_port, bus_port = free_port(), free_port()
    config = tmp_path / "ab.toml"
    config.write_text(f"""
[source]
spec = "demo"
fps = 25.0
[pipeline]
estimator = "geometry"
[signal]
smoothing = false
mirror = true
[signal.mouth]
beta = 7.5
[bus]
pub_endpoint = "tcp://127.0.0.1:{bus_port}"
control_endpoint = "tcp://127.0.0.1:{control_port}"
send_hwm = 64
""")
    proc = subprocess.Popen(cli("run", "--config", str(config), "--calibration", "off", "--smoothing", "on"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=hermetic_env())
    control = f"tcp://127.0.0.1:{control_port}"
    try:
        status = wait_for(lambda: _status(control), timeout=60)
        settings = control_request({"cmd": "signal.get"}, control)
        sub = BusSubscriber(f"tcp://127.0.0.1:{bus_port}")
        faces = recv_face(sub, 10000)
        sub.close()
    finally:
        out = stop(proc)
    assert status["estimator"] == "geometry", "the file's estimator, though --estimator defaults to auto"
    assert status["signal"]["mirror"] is True, "the file's mirror, though --mirror defaults to off"
    # the file's beta, and the default min_cutoff the file left alone
    assert settings["filter"]["mouth"]["beta"] == 7.5
    assert settings["filter"]["mouth"]["min_cutoff"] == SignalChainConfig().mouth.min_cutoff
    assert status["smoothing"] is True, "--smoothing on was typed, so it beats the file"
    assert status["calibration"] is False
    assert faces is not None, "the file's bus endpoint carries the faces"
    assert proc.returncode == 0, out


def _status(control: str):
    try:
        reply = control_request({"cmd": "status"}, control, timeout_ms=500)
        return reply if reply.get("ok") else None
    except TimeoutError:
        return None


def test_readme_config_example_asks_for_the_camera(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    assert 'spec = "camera:0"' in block
    (tmp_path / "readme.toml").write_text(block)
    result = subprocess.run(cli("run", "--config", str(tmp_path / "readme.toml"), "--bus",
                                f"tcp://127.0.0.1:{free_port()}", "--control", f"tcp://127.0.0.1:{free_port()}"),
                            capture_output=True, text=True, timeout=120, env=hermetic_env())
    # This machine has no camera: the daemon must try camera 0 (and say so), not stream the demo clip.
    assert result.returncode == 1 and "camera 0" in result.stderr, result.stdout + result.stderr
    assert "streaming demo" not in result.stdout


BAD_CONFIGS = {
    "status_hz-zero": ("status_hz = 0\n", "status_hz"),
    "status_hz-nan": ("status_hz = nan\n", "status_hz"),
    "adapters-not-a-table": ("adapters = 5\n", "adapters"),
    "adapter-not-a-table": ("[adapters]\nvmc = 3\n", "adapters.vmc"),
    "send_hwm-string": ("[bus]\nsend_hwm = \"many\"\n", "bus.send_hwm"),
    "max_frames-string": ("max_frames = \"10\"\n", "max_frames"),
    "profile-int": ("profile = 3\n", "profile"),
    "host-int": ("[adapters.vmc]\nhost = 127\n", "adapters.vmc.host"),
    "subject-int": ("[adapters.livelink]\nsubject = 5\n", "adapters.livelink.subject"),
    "rate-nan": ("[adapters.vmc]\nrate_hz = nan\n", "adapters.vmc.rate_hz"),
    "rate-negative": ("[adapters.vmc]\nrate_hz = -1\n", "adapters.vmc.rate_hz"),
    "port-fraction": ("[adapters.vmc]\nport = 39539.7\n", "adapters.vmc.port"),
    "port-too-big": ("[adapters.vmc]\nport = 70000\n", "adapters.vmc.port"),
    "fps-negative": ("[source]\nfps = -30.0\n", "source.fps"),
    "smoothing-int": ("[signal]\nsmoothing = 1\n", "signal.smoothing"),
    "filter-string": ("[signal.eyes]\nbeta = \"fast\"\n", "signal.eyes.beta"),
    "source-not-a-table": ("source = \"demo\"\n", "source"),
    "unknown-key": ("[bus]\nsend_hvm = 5\n", "send_hvm"),
    "not-toml": ("[source\n", "not valid TOML"),
}


@pytest.fixture(params=sorted(BAD_CONFIGS))
def bad_config(request, tmp_path) -> tuple[Path, str]:
    text, key = BAD_CONFIGS[request.param]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path, key


def test_each_wrong_config_value_gives_one_line_naming_the_key_and_starts_nothing(bad_config):
    path, key = bad_config
    control = f"tcp://127.0.0.1:{free_port()}"
    result = subprocess.run(cli("run", "--config", str(path), "--control", control,
                                "--bus", f"tcp://127.0.0.1:{free_port()}"),
                            capture_output=True, text=True, timeout=120, env=hermetic_env())
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and key in lines[0] and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "streaming" not in result.stdout, "the daemon never started half-set"


@pytest.fixture(params=[("--fps", "nan", "source.fps"), ("--fps", "-1", "source.fps"),
                        ("--max-frames", "0", "max_frames"), ("--vmc-port", "70000", "adapters.vmc.port")])
def bad_flag(request):
    return request.param


def test_a_wrong_flag_value_gives_one_line_naming_the_key(bad_flag):
    flag, value, key = bad_flag
    extra = ["--vmc"] if flag == "--vmc-port" else []
    result = subprocess.run(cli("run", flag, value, *extra, "--control", f"tcp://127.0.0.1:{free_port()}",
                                "--bus", f"tcp://127.0.0.1:{free_port()}"),
                            capture_output=True, text=True, timeout=120, env=hermetic_env())
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and key in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# --- 8. Ctrl-C during start-up ---------------------------------------------------------------------


@pytest.fixture(params=["libzmq", "onnxruntime"])
def startup_point(request) -> str:
    """A library whose appearance in the process's memory map marks a point in start-up: libzmq while
    the command line imports, onnxruntime while the estimator and MediaPipe load."""
    return request.param


def test_ctrl_c_during_start_up_prints_no_traceback(startup_point):
    proc = subprocess.Popen(cli("run", "--bus", f"tcp://127.0.0.1:{free_port()}",
                                "--control", f"tcp://127.0.0.1:{free_port()}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=hermetic_env())
    try:
        wait_for(lambda: startup_point in Path(f"/proc/{proc.pid}/maps").read_text(), timeout=60, interval=0.01)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert proc.returncode in (0, 130), out
