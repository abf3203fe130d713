"""Benchmarks and evaluations (not tests): run as `python -m bench.<name>`."""
