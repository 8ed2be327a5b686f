"""`deephash evaluate` on an archive that is not CIFAR-10 (issue 15 item 7): the report states the
split actually drawn, the archive's own train/test split is a protocol, checkpoints of one method
at several bit lengths form one line, and the setup names the bit lengths evaluated."""
from __future__ import annotations

import json

from click.testing import CliRunner

from deephash.cli.main import cli
from deephash.eval.protocols import get_protocol


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def test_protocol_words_show_the_drawn_counts_not_cifar_ones():
    p = get_protocol("cifar10-50k")
    assert "10,000 images of the source split 'test'" in p.describe()  # nominal: CIFAR-10's own numbers
    words = p.describe({"query": 100, "train": 300, "database": 300, "total": 400})
    assert "the 100 images of the source split 'test'" in words and "the 300 images of the source split 'train'" in words
    assert "10,000" not in words and "50,000" not in words
    assert "drawn from this archive: 100 queries, 300 training images, 300 database images, of 400 images" in words
    w54 = get_protocol("cifar10-54k").describe({"query": 20, "train": 100, "database": 280, "total": 400})
    assert "the remaining 280 images" in w54 and "pooled 400" in w54 and "mAP@all here" in w54


def test_protocols_prints_a_described_line_each():
    r = run("protocols")
    lines = r.output.splitlines()
    assert len(lines) >= 7
    by_name = {ln.split()[0]: ln for ln in lines}
    assert "own train/test split" in by_name["source-split"] and "(mAP@all)" in by_name["source-split"]
    assert "(mAP@1,000)" in by_name["cifar10-50k"]


def test_source_split_report_on_a_small_archive(small_cifar, tmp_path):
    cks = []
    for bits in (16, 32):
        ck = tmp_path / f"itq{bits}.pt"
        r = run("train", small_cifar, "--split", "train", "--method", "itq", "--bits", bits, "--image-size", 32,
                "--out", ck, "--quiet")
        assert r.exit_code == 0, r.output
        cks += ["--model", ck]
    out = tmp_path / "rep"
    r = run("evaluate", "--dataset", small_cifar, "--protocol", "source-split", *cks, "--image-size", 32, "--out", out)
    assert r.exit_code == 0, r.output
    j = json.loads((out / "report.json").read_text())
    cfg = j["config"] if "config" in j else j
    assert cfg["bits"] == [16, 32]  # the bit lengths evaluated, not the --bits default
    rows = {(x["method"], x["bits"]) for x in j["results"] if x["bits"] is not None}
    assert rows == {("itq", 16), ("itq", 32)}  # one method, one line in the mAP-vs-bits plot
    md = (out / "report.md").read_text()
    assert "the 100 images of the split 'test'" in md and "the 300 images of the split 'train'" in md
    assert "10,000" not in md and "50,000" not in md
    split = json.loads((out / "split.json").read_text())
    assert all(p.startswith("test/") for p in split["query"]) and all(p.startswith("train/") for p in split["train"])
