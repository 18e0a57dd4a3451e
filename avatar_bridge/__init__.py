"""avatar-bridge: webcam face -> 52 ARKit blendshapes, head pose and gaze, on a ZeroMQ bus and the
protocols avatar apps already speak."""

__version__ = "0.1.0"
