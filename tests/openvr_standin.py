"""A STAND-IN for the ``openvr`` module (pyopenvr), not OpenVR: SteamVR cannot run here.

It offers exactly the names engine_plugins/openvr/avatar_bridge_openvr/openvr_layer.py calls, with
pyopenvr's spellings, call shapes and constants' values (openvr.h), and lets a test play the
headset: ``hmd_matrix`` is the HMD pose the next poll returns, ``press(x, y)`` queues a mouse click
in OpenVR's overlay coordinates (y from the bottom), ``shown`` holds every texture the layer set.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace


class OpenVRStandInError(RuntimeError):
    """What the stand-in raises where pyopenvr would raise an OpenVRError."""


class _Vector2:
    def __init__(self) -> None:
        self.v = [0.0, 0.0]


class _Event:
    def __init__(self) -> None:
        self.eventType = 0
        self.data = SimpleNamespace(mouse=SimpleNamespace(x=0.0, y=0.0, button=0))


class _Overlay:
    def __init__(self, vr: "OpenVRStandIn") -> None:
        self._vr = vr

    def createDashboardOverlay(self, key: str, name: str):
        self._vr.created.append((key, name))
        return 7, 8

    def setOverlayWidthInMeters(self, handle, width):
        self._vr.settings["width_m"] = width

    def setOverlayInputMethod(self, handle, method):
        self._vr.settings["input"] = method

    def setOverlayMouseScale(self, handle, scale):
        self._vr.settings["mouse_scale"] = tuple(scale.v)

    def setOverlayRaw(self, handle, buffer, width, height, depth):
        assert isinstance(buffer, ctypes.Array) and len(buffer) == width * height * depth
        self._vr.shown.append((bytes(buffer), width, height, depth))

    def pollNextOverlayEvent(self, handle, event) -> bool:
        if not self._vr.events:
            return False
        kind, x, y = self._vr.events.pop(0)
        event.eventType, event.data.mouse.x, event.data.mouse.y = kind, x, y
        return True


class _System:
    def __init__(self, vr: "OpenVRStandIn") -> None:
        self._vr = vr

    def getDeviceToAbsoluteTrackingPose(self, universe, predicted_s, count):
        poses = [SimpleNamespace(bPoseIsValid=False, mDeviceToAbsoluteTracking=None) for _ in range(count)]
        if self._vr.hmd_matrix is not None:
            poses[0] = SimpleNamespace(bPoseIsValid=True, mDeviceToAbsoluteTracking=self._vr.hmd_matrix)
        return poses


class OpenVRStandIn:
    """Passed where the layer expects the ``openvr`` module."""

    VRApplication_Overlay = 2
    VROverlayInputMethod_Mouse = 1
    VREvent_MouseMove = 300
    VREvent_MouseButtonDown = 301
    VREvent_MouseButtonUp = 302
    TrackingUniverseStanding = 1
    k_unMaxTrackedDeviceCount = 64
    k_unTrackedDeviceIndex_Hmd = 0
    HmdVector2_t = _Vector2
    VREvent_t = _Event

    def __init__(self, steamvr_running: bool = True) -> None:
        self.steamvr_running = steamvr_running
        self.created: list[tuple[str, str]] = []
        self.settings: dict = {}
        self.shown: list[tuple[bytes, int, int, int]] = []
        self.events: list[tuple[int, float, float]] = []
        self.hmd_matrix = None
        self.shut_down = False

    def init(self, application_type):
        if not self.steamvr_running:
            raise OpenVRStandInError("VRInitError_Init_HmdNotFound")
        assert application_type == self.VRApplication_Overlay
        return _System(self)

    def IVROverlay(self):
        return _Overlay(self)

    def shutdown(self) -> None:
        self.shut_down = True

    def press(self, x: float, y_from_bottom: float) -> None:
        self.events += [(self.VREvent_MouseMove, x, y_from_bottom), (self.VREvent_MouseButtonDown, x, y_from_bottom),
                        (self.VREvent_MouseButtonUp, x, y_from_bottom)]
