"""Benchmarks: each prints what it measured (run with `python -m bench.<name>`)."""
