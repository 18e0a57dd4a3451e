"""The running system: one frame's pipeline, the daemon around it, and the bench."""
