"""Benchmark cases (each runs in its own process; see tools/analysis_tools)."""
