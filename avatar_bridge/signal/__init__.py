"""The stage between estimator and bus: calibration, blink link, mirror, One Euro smoothing, face-lost."""
