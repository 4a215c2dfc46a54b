"""Measurement scripts (`python -m ivr.bench.<name>`): not imported by the server."""
