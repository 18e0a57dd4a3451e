"""Estimators turn a FaceObservation into a FaceState. See base.Estimator."""
