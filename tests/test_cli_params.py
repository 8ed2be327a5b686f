"""`--param [METHOD.]KEY=VALUE`: one syntax for train, finetune and bench methods (issue 11 item 5)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from deephash.cli.main import cli
from deephash.cli.params import method_params, parse_params
from deephash.errors import ConfigError


def test_values_are_json_when_they_parse_and_strings_otherwise():
    assert parse_params(["n_iters=3000", "loss_variant=paper", "lr=1e-4", "margin=[1, 2]"], "mhcln") == {
        "n_iters": 3000, "loss_variant": "paper", "lr": 1e-4, "margin": [1, 2]}
    assert parse_params(["mhcln.n_iters=30", "note=a=b"], "mhcln") == {"n_iters": 30, "note": "a=b"}


def test_one_method_takes_keys_with_or_without_its_prefix():
    assert method_params(["dpsh.lr=0.1", "eta=2"], ["dpsh"]) == {"dpsh": {"lr": 0.1, "eta": 2}}
    with pytest.raises(ConfigError, match="is for 'mhcln', which this command does not run \\(it runs dpsh\\)"):
        parse_params(["mhcln.n_iters=3"], "dpsh")


def test_several_methods_need_the_prefix():
    assert method_params(["mhcln.n_iters=3", "dpsh.lr=0.1"], ["mhcln", "dpsh"]) == {
        "mhcln": {"n_iters": 3}, "dpsh": {"lr": 0.1}}
    assert method_params(["mhcln.n_iters=3"], None) == {"mhcln": {"n_iters": 3}}
    with pytest.raises(ConfigError, match="write METHOD.n_iters=3"):
        method_params(["n_iters=3"], ["mhcln", "dpsh"])
    with pytest.raises(ConfigError, match="expects \\[METHOD.\\]KEY=VALUE"):
        method_params(["n_iters"], None)


def test_the_cli_refuses_a_param_for_another_method_in_one_line(small_cifar, tmp_path):
    r = CliRunner().invoke(cli, ["train", str(small_cifar), "--method", "itq", "--bits", "16", "--param",
                                 "mhcln.n_iters=3", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "is for 'mhcln'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.pt").exists()
