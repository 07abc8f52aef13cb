"""Benchmark experiments (not part of the test suite). Run them from the repository root as
modules, e.g. ``python -m benchmarks.e2e_speed --help``; ``common.py`` holds the shared
timing, compile counting and reporting. Results: benchmarks/RESULTS.md."""
