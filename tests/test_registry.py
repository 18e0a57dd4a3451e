"""One registry each for estimators and adapters: what `run`, `replay`, `bridge` and `doctor` offer
is exactly what the registries hold, and every registered adapter really sends."""

import socket

import numpy as np
import pytest
from typer.testing import CliRunner

from avatar_bridge.adapters.registry import create_adapter, list_adapters
from avatar_bridge.adapters.sender import UdpSender
from avatar_bridge.cli import app
from avatar_bridge.estimators.registry import EstimatorError, create_estimator, list_estimators
from avatar_bridge.types import FaceState


def help_of(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_run_help_offers_every_registered_estimator_and_adapter():
    text = help_of("run")
    for name in list_estimators():
        assert f"{name}:" in text
    for name in list_adapters():
        assert f"--{name} " in text


def test_replay_help_and_bridge_offer_every_registered_adapter():
    replay, bridge = help_of("replay"), help_of("bridge")
    for name in list_adapters():
        assert f"--{name} " in replay and name in bridge


def test_unknown_estimator_names_the_registered_ones():
    with pytest.raises(EstimatorError) as err:
        create_estimator("magic")
    assert all(name in str(err.value) for name in list_estimators())


def test_unknown_adapter_names_the_registered_ones():
    with pytest.raises(ValueError) as err:
        create_adapter("osc")
    assert all(name in str(err.value) for name in list_adapters())


@pytest.mark.parametrize("name", list_adapters())
def test_every_registered_adapter_sends_one_packet_per_frame_through_the_shared_skeleton(name):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2.0)
        options = {"port": receiver.getsockname()[1], "rate_hz": 0}
        if name == "vrchat":
            options.update(listen_port=None, oscquery=False)
        adapter = create_adapter(name, options)
        try:
            assert isinstance(adapter, UdpSender)
            adapter.send(FaceState(blendshapes=np.full(52, 0.5, np.float32), face_present=True))
            assert len(receiver.recv(65536)) > 0
            stats = adapter.stats()
            assert stats["packets"] >= 1 and stats["errors"] == 0 and stats["dropped_rate"] == 0
        finally:
            adapter.close()
