"""Face textures at run time: the shipped generator, the daemon's texture topic, the virtual camera."""

from __future__ import annotations

import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from avatar_bridge.arkit import INDEX
from avatar_bridge.bus import wire
from avatar_bridge.bus.sockets import BusConfig, BusSubscriber
from avatar_bridge.runtime.daemon import Daemon, DaemonConfig
from avatar_bridge.runtime.pipeline import PipelineConfig
from avatar_bridge.runtime.texture import TextureConfig, TextureThread
from avatar_bridge.runtime.virtual_camera import VirtualCamera, VirtualCameraConfig
from avatar_bridge.tracking.sources import SourceConfig
from avatar_bridge.types import FaceState
from blendshape_model.texture import TextureGenerator, TextureModelConfig

from helpers import cli, hermetic_env


@pytest.fixture(scope="module")
def generator() -> TextureGenerator:
    return TextureGenerator(TextureModelConfig())


def mouth_box() -> tuple[slice, slice]:
    """Rows and columns of the mouth in the shipped reference framing (true render's landmarks)."""
    from training.gan_data import FILL, FOV_DEG
    from training.render import Renderer, default_params, framing
    with Renderer(128, 128) as r:
        res = r.render(default_params(fov_y_deg=FOV_DEG, head_position=framing(FOV_DEG, FILL),
                                      blendshapes={"jawOpen": 1.0}))
    pts = res.landmarks68[48:68]
    (x0, y0), (x1, y1) = pts.min(0).astype(int) - 3, pts.max(0).astype(int) + 3
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def test_raising_jaw_open_opens_the_generated_mouth(generator):
    neutral = np.zeros(52, np.float32)
    open_ = neutral.copy()
    open_[INDEX["jawOpen"]] = 1.0
    a = generator.generate(neutral).astype(np.float32)
    b = generator.generate(open_).astype(np.float32)
    assert a.shape == b.shape == (128, 128, 3)
    change = np.abs(b - a).mean(2)
    rows, cols = mouth_box()
    inside = np.zeros_like(change, bool)
    inside[rows, cols] = True
    assert change[inside].mean() > 2.0 * change[~inside].mean(), (change[inside].mean(), change[~inside].mean())
    # and the mouth got darker (an open mouth shows the dark mouth cavity)
    assert b[rows, cols].mean() < a[rows, cols].mean()


def test_int8_generator_draws_nearly_the_same_face(generator):
    small = TextureGenerator(TextureModelConfig(int8=True))
    shapes = np.zeros(52, np.float32)
    shapes[INDEX["jawOpen"]] = 0.6
    diff = np.abs(small.generate(shapes).astype(int) - generator.generate(shapes)).mean()
    assert diff < 12.0, diff   # grey levels of 255, mean over the image


def test_texture_topic_carries_decodable_jpegs_while_faces_flow_without_gaps(endpoints, tmp_path):
    bus, control = endpoints
    config = DaemonConfig(source=SourceConfig(spec="demo"), pipeline=PipelineConfig(estimator="geometry"),
                          bus=BusConfig(pub_endpoint=bus, control_endpoint=control), profile_dir=str(tmp_path),
                          texture=TextureConfig(enabled=True, fps=10.0))
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, daemon=True)
    sub = BusSubscriber(bus, topics=(wire.TOPIC_FACE, wire.TOPIC_TEXTURE))
    time.sleep(0.5)
    thread.start()
    faces, textures = [], []
    deadline = time.monotonic() + 60
    try:
        while (len(textures) < 5 or len(faces) < 60) and time.monotonic() < deadline:
            got = sub.recv(200)
            if got is None:
                continue
            topic, payload = got
            if topic == wire.TOPIC_FACE:
                faces.append(wire.decode_face_message(payload)["seq"])
            elif topic == wire.TOPIC_TEXTURE:
                textures.append(wire.decode_map(payload))
    finally:
        daemon.stop()
        thread.join(timeout=10)
        sub.close()
    assert len(textures) >= 5 and len(faces) >= 60, (len(textures), len(faces))
    assert faces == list(range(faces[0], faces[0] + len(faces))), "face messages must keep flowing with no gap"
    for t in textures:
        assert (t["v"], t["format"], t["width"], t["height"]) == (1, "jpeg", 128, 128)
        image = cv2.imdecode(np.frombuffer(t["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (128, 128, 3)
        assert t["seq"] <= faces[-1], "a texture names the face message it was drawn from"
    seqs = [t["seq"] for t in textures]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert daemon.status()["texture"]["generated"] >= 5


class StandInPyvirtualcamCamera:
    """A STAND-IN for pyvirtualcam.Camera (no virtual camera device can exist here): same
    constructor keywords, records what it is sent."""

    def __init__(self, width: int, height: int, fps: float, **kwargs) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.frames: list[np.ndarray] = []
        self.closed = False

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True


def test_virtual_camera_gets_every_generated_texture_at_its_size(generator):
    stand_in: list[StandInPyvirtualcamCamera] = []
    camera = VirtualCamera(VirtualCameraConfig(fps=30.0),
                           camera_factory=lambda **kw: stand_in.append(StandInPyvirtualcamCamera(**kw)) or stand_in[0])
    textures = TextureThread(TextureConfig(enabled=True, fps=30.0), generator, camera.send)
    textures.start()
    try:
        for seq in range(3):
            shapes = np.zeros(52, np.float32)
            shapes[INDEX["jawOpen"]] = seq / 2
            textures.offer(seq, FaceState(blendshapes=shapes, frame_index=seq))
            deadline = time.monotonic() + 10
            while textures.generated <= seq and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        textures.stop()
        camera.close()
    cam = stand_in[0]
    assert (cam.width, cam.height) == (128, 128) and cam.closed
    assert len(cam.frames) == 3 and all(f.shape == (128, 128, 3) and f.dtype == np.uint8 for f in cam.frames)
    assert np.abs(cam.frames[2].astype(int) - cam.frames[0]).mean() > 1.0, "the camera shows the expression"
    with pytest.raises(ValueError, match="expected"):
        camera.send(np.zeros((64, 64, 3), np.uint8))


def test_run_texture_with_a_missing_reference_says_so_in_one_line(tmp_path):
    proc = subprocess.run(cli("run", "--texture", "--texture-reference", str(tmp_path / "nobody.png"),
                              "--max-frames", "1"), capture_output=True, text=True, env=hermetic_env(), timeout=120)
    assert proc.returncode == 1
    assert "cannot read the reference face image" in proc.stderr and "Traceback" not in proc.stderr


def test_run_virtual_camera_without_pyvirtualcam_says_what_to_install():
    try:
        import pyvirtualcam  # noqa: F401
        installed = True
    except ImportError:
        installed = False
    proc = subprocess.run(cli("run", "--virtual-camera", "--max-frames", "1"), capture_output=True, text=True,
                          env=hermetic_env(), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("pip install" if not installed else "virtual camera") in proc.stderr
