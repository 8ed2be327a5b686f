"""The machine a benchmark ran on, recorded beside every figure: CPU, cores, the vector instruction
sets the CPU has and the one deephash's search kernel uses, and the load at the start (a speed
measured on a shared machine is only honest as a ratio, next to its load)."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

_ISA_FLAGS = [("avx2", "AVX2"), ("avx512f", "AVX-512F"), ("avx512_vpopcntdq", "AVX-512 VPOPCNTDQ"),
              ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("amx_int8", "AMX-INT8")]


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The vector instruction sets the CPU has, as the benchmarks print them (from /proc/cpuinfo)."""
    flags = _cpuinfo_field("flags")
    if flags is None:
        return "unknown"
    have = set(flags.split())
    return ", ".join(n for f, n in _ISA_FLAGS if f in have) or "SSE only"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # pragma: no cover - not on Linux
        return None


def machine_facts() -> dict[str, Any]:
    """What every benchmark's JSON records under ``"machine"``."""
    from deephash.index.kernel_searcher import kernel_isa

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "isa": cpu_isa(), "kernel_isa": kernel_isa(),
            "load_avg_1m_at_start": load_average(), "python": platform.python_version(),
            "platform": platform.platform()}


def machine_line(m: dict[str, Any]) -> str:
    """One line for the table's heading: CPU, cores, ISA, kernel path, load."""
    return (f"CPU: {m['cpu']}, {m['cores']} cores; ISA: {m['isa']}; search kernel: {m['kernel_isa'] or 'not built'}; "
            f"load average {m['load_avg_1m_at_start']}")


def write_result(json_path, result: dict[str, Any], say, *, lead: str = "") -> None:
    """Every benchmark's last step: its JSON written atomically to ``json_path`` (when one is given), and
    a line saying where."""
    from deephash.utils import atomic_write_json

    if json_path:
        atomic_write_json(json_path, result)
        say(f"{lead}wrote {json_path}")
