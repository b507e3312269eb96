"""Benchmarks: scripts run by hand, their figures in bench/README.md."""
