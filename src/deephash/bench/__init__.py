"""The benchmarks behind ``deephash bench <name>`` (one module each; never run as timed tests)."""
from deephash.bench.methods_bench import format_methods_markdown, run_methods_bench
from deephash.bench.search_bench import make_codes, run_search_bench

__all__ = ["run_search_bench", "make_codes", "run_methods_bench", "format_methods_markdown"]
