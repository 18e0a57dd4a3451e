"""Recorded performances: the take format, recorder, replay, Live Link Face CSV, plots, offline processing."""
