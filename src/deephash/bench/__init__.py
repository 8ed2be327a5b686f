"""Benchmarks the CLI and scripts share: the method comparison on precomputed features."""
from deephash.bench.methods_bench import format_methods_markdown, run_methods_bench

__all__ = ["run_methods_bench", "format_methods_markdown"]
