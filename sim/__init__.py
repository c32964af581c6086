"""Simulation side of fp8accel: golden model, simulator runners and test-bench helpers."""
