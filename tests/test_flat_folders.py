"""A flat folder of unlabelled images (no class folders, no label file): listed, trained on by the
unsupervised methods only, indexed and searched end to end through the CLI, labels "none"."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.data.archive import UNLABELLED
from deephash.hashers import HASHERS, list_hashers
from deephash.hashers.deep import DeepHasher
from deephash.index import HashIndex


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def photos(tmp_path, tmp_cache):
    """12 drawn 'photos' (shapes on coloured grounds) in one flat folder, plus a stray text file."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        im = Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(0, 255, 3)))
        d = ImageDraw.Draw(im)
        x, y = (int(v) for v in rng.integers(4, 24, 2))
        box = [x, y, x + 20, y + 20]
        (d.ellipse if i % 2 else d.rectangle)(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        im.save(root / f"img{i:02d}.{'png' if i % 3 else 'jpg'}")
    (root / "notes.txt").write_text("not an image")
    return root


def test_a_flat_folder_lists_as_an_unlabelled_archive(photos):
    a = open_archive(photos)
    assert len(a) == 12 and not a.labelled and a.class_names == []
    assert (a.labels == UNLABELLED).all() and a.splits == [""] * 12
    assert a.skipped == [] and a.ignored == ["notes.txt"]  # not an image: ignored, not a bad image


UNSUPERVISED = [n for n in list_hashers() if not HASHERS.get(n).supervised]


def test_the_unsupervised_methods_are_the_registered_ones_without_labels():
    assert {"lsh", "itq", "sh", "pq", "bihalf", "neighbour-hash"} <= set(UNSUPERVISED)


@pytest.mark.parametrize("method", UNSUPERVISED)  # every registered method that trains without labels
def test_unsupervised_methods_train_index_and_search_a_flat_folder(photos, tmp_path, method):
    ck, ix = tmp_path / f"{method}.pt", tmp_path / f"{method}.dhi"
    extra = ("--iters", 30) if issubclass(HASHERS.get(method), DeepHasher) else ()
    r = run("train", photos, "--method", method, "--bits", 8, "--image-size", 32, *extra, "--out", ck)
    if method == "pq":  # 256 centroids per sub-space: 12 images are refused for their number, not for labels
        line = r.output.strip()
        assert r.exit_code == 2 and line.count("\n") == 0 and "needs at least 256 training vectors" in line
        assert "label" not in line and not ck.exists()
        return
    assert r.exit_code == 0, r.output
    assert f"trained {method} (8 bits) on 12 images" in r.output
    r = run("index", photos, "--model", ck, "--out", ix)
    assert r.exit_code == 0, r.output
    assert "indexed 12 images (8 bits)" in r.output
    index = HashIndex.load(ix)
    assert index.labels is None and index.class_names == []
    r = run("search", ix, photos / "img01.png", "-k", 5, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res["results"]) == 5 and all(h["label"] is None for h in res["results"])
    assert {h["path"] for h in res["results"]} <= {f.name for f in photos.iterdir() if f.suffix != ".txt"}
    r = run("search", ix, photos / "img01.png", "-k", 3)
    assert r.exit_code == 0 and "None" in r.output


def test_supervised_methods_are_refused_naming_those_that_need_labels(photos, tmp_path):
    r = run("train", photos, "--method", "mhcln", "--bits", 8, "--image-size", 32, "--out", tmp_path / "m.pt")
    assert r.exit_code == 2
    line = r.output.strip()
    assert line.count("\n") == 0 and line.startswith("error: mhcln needs labels and this archive has none")
    supervised = [n for n in list_hashers() if HASHERS.get(n).supervised]
    unsupervised = [n for n in list_hashers() if not HASHERS.get(n).supervised]
    assert {"lsh", "itq", "sh", "bihalf"} <= set(unsupervised) and "mhcln" in supervised
    assert f"methods that need labels: {', '.join(supervised)}" in line
    assert f"without labels use one of: {', '.join(unsupervised)}" in line
    assert not (tmp_path / "m.pt").exists()


def test_a_model_trained_on_labels_indexes_and_searches_a_flat_folder(photos, tmp_path):
    """Any trained model, supervised or not, indexes an unlabelled folder."""
    lab = tmp_path / "labelled"
    for i, f in enumerate(sorted(photos.glob("img*"))):
        dst = lab / ("round" if i % 2 else "square") / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.read_bytes())
    ck = tmp_path / "sdh.pt"
    r = run("train", lab, "--method", "sdh", "--bits", 8, "--image-size", 32, "--out", ck)
    assert r.exit_code == 0, r.output
    r = run("index", photos, "--model", ck, "--out", tmp_path / "i.dhi")
    assert r.exit_code == 0, r.output
    res = json.loads(run("search", tmp_path / "i.dhi", photos / "img00.jpg", "-k", 12, "--json").output)
    assert len(res["results"]) == 12 and {h["label"] for h in res["results"]} == {None}
