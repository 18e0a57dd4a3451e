"""Frames in, faces found: frame sources, the MediaPipe tracker, landmark tables, head pose."""
