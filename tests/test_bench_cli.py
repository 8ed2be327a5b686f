"""``deephash bench``: one entry point for every benchmark. ``--help`` lists each registered one with a
one-line description, every benchmark module has its command, and method hyper-parameters take one
syntax (``--param [METHOD.]KEY=VALUE``) wherever a benchmark accepts them."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from click.testing import CliRunner

import deephash.bench
from deephash.cli.bench_cmd import bench
from deephash.cli.main import cli


def _listed(help_text: str) -> dict[str, str]:
    section = help_text.split("Commands:\n", 1)[1]
    return dict(re.findall(r"^  (\S+)\s+(.+)$", section, flags=re.M))


def test_bench_help_lists_every_registered_benchmark_on_one_line():
    r = CliRunner().invoke(cli, ["bench", "--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    listed = _listed(r.output)
    assert set(listed) == set(bench.commands)
    for name, line in listed.items():
        assert len(line) > 20 and not line.endswith("...") and line.endswith("."), (name, line)
    assert len(r.output.split("Commands:\n", 1)[1].strip().splitlines()) == len(bench.commands)  # no wrapped line


def test_every_benchmark_module_has_a_command():
    sources = "\n".join(inspect.getsource(c.callback) for c in bench.commands.values())
    modules = sorted(p.stem for p in Path(deephash.bench.__file__).parent.glob("*_bench.py"))
    assert modules and [m for m in modules if f"deephash.bench.{m} import" not in sources] == []


def test_one_param_syntax_across_the_benchmarks():
    takers = []
    for name, c in bench.commands.items():
        for p in c.params:
            if any("param" in o for o in p.opts):
                assert p.opts == ["--param"] and p.multiple and p.help.startswith("method hyper-parameter [METHOD.]KEY=VALUE (JSON value)"), (name, p.help)
                takers.append(name)
    assert sorted(takers) == ["finetune", "methods"]
