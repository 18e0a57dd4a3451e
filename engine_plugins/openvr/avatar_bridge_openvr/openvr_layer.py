"""The only code that touches the ``openvr`` module (pyopenvr, PyPI ``openvr``): kept thin so the
rest is tested without SteamVR. Every call here is one pyopenvr call; nothing decides anything.

Tests pass ``tests/openvr_standin.py`` (a stand-in for ``openvr``, named as such) as ``vr``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class Click:
    """A mouse-button press on the overlay, in texture pixels with y from the TOP."""

    x: float
    y: float


class OpenVRLayer:
    """An overlay application: one dashboard overlay, its mouse events, the HMD pose."""

    def __init__(self, vr: ModuleType, key: str = "avatar-bridge.dashboard", name: str = "avatar-bridge",
                 width: int = 512, height: int = 320, width_m: float = 1.6) -> None:
        self.vr = vr
        self.width, self.height = width, height
        self.system = vr.init(vr.VRApplication_Overlay)      # raises vr.OpenVRError without SteamVR
        self.overlay = vr.IVROverlay()
        self.handle, self.thumbnail = self.overlay.createDashboardOverlay(key, name)
        self.overlay.setOverlayWidthInMeters(self.handle, width_m)
        self.overlay.setOverlayInputMethod(self.handle, vr.VROverlayInputMethod_Mouse)
        scale = vr.HmdVector2_t()
        scale.v[0], scale.v[1] = float(width), float(height)
        self.overlay.setOverlayMouseScale(self.handle, scale)

    def show(self, rgba: np.ndarray) -> None:
        data = np.ascontiguousarray(rgba, np.uint8)
        buffer = (ctypes.c_char * data.nbytes).from_buffer_copy(data.tobytes())
        self.overlay.setOverlayRaw(self.handle, buffer, data.shape[1], data.shape[0], 4)

    def clicks(self) -> list[Click]:
        """The presses queued since the last call (OpenVR's mouse y runs from the bottom)."""
        out = []
        event = self.vr.VREvent_t()
        while True:
            got = self.overlay.pollNextOverlayEvent(self.handle, event)
            if not (got[0] if isinstance(got, tuple) else got):
                break
            if event.eventType == self.vr.VREvent_MouseButtonDown:
                out.append(Click(float(event.data.mouse.x), self.height - float(event.data.mouse.y)))
        return out

    def hmd_pose(self):
        """The HMD's 3x4 device-to-tracking matrix, or None while it is not tracked."""
        vr = self.vr
        poses = self.system.getDeviceToAbsoluteTrackingPose(vr.TrackingUniverseStanding, 0,
                                                            vr.k_unMaxTrackedDeviceCount)
        hmd = poses[vr.k_unTrackedDeviceIndex_Hmd]
        return hmd.mDeviceToAbsoluteTracking if hmd.bPoseIsValid else None

    def close(self) -> None:
        self.vr.shutdown()
