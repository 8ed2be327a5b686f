"""Protocol splits: sizes, per-class counts, disjointness, determinism by seed, saved-file round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deephash.errors import ConfigError, DataError, UnknownNameError
from deephash.eval.protocols import PROTOCOLS, Protocol, Split, get_protocol, list_protocols


def cifar_like():
    """60,000 labels laid out like CIFAR-10: 5,000 train then 1,000 test per class."""
    labels = np.concatenate([np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)])
    names = np.array(["train"] * 50000 + ["test"] * 10000)
    return labels, names


def multi_hot(n=3000, n_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_classes)) < 0.3).astype(np.int64)
    y[np.arange(n), rng.integers(0, n_classes, n)] = 1  # every image holds at least one label
    return y


def labels_for(p: Protocol):
    if p.relevance == "multi":
        return multi_hot(20000, 21), None
    return cifar_like()


def test_registry_lists_the_required_protocols():
    names = list_protocols()
    for required in ("cifar10-54k", "cifar10-59k", "cifar10-50k", "folder-split", "leave-one-out"):
        assert required in names
    assert names == sorted(names)
    with pytest.raises(UnknownNameError, match="unknown protocol 'cifar-54k'; known protocols: cifar10-50k"):
        get_protocol("cifar-54k")
    with pytest.raises(ConfigError, match="protocol 'cifar10-54k' takes no parameters; got topk"):
        get_protocol("cifar10-54k", topk=1000)
    with pytest.raises(ConfigError, match="protocol 'folder-split' takes query_ratio, train_ratio, topk, database; got seed"):
        get_protocol("folder-split", seed=1)


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_every_protocol_splits_disjointly_and_deterministically(name):
    p = get_protocol(name)
    labels, names = labels_for(p)
    a = p.split(labels, names, seed=3)
    b = p.split(labels, names, seed=3)
    c = p.split(labels, names, seed=4)
    for x, y in ((a.query_idx, b.query_idx), (a.train_idx, b.train_idx), (a.db_idx, b.db_idx)):
        np.testing.assert_array_equal(x, y)
    assert a.protocol == name and a.version == p.version and a.seed == 3
    assert len(np.intersect1d(a.query_idx, a.train_idx)) == 0
    if p.leave_one_out:
        np.testing.assert_array_equal(a.query_idx, a.db_idx)
    else:
        assert len(np.intersect1d(a.query_idx, a.db_idx)) == 0
    for idx in (a.query_idx, a.train_idx, a.db_idx):
        assert len(np.unique(idx)) == len(idx)
    follows_source = p.kind == "source-split" or (p.leave_one_out and names is not None)
    if not follows_source:  # the dataset's own split has nothing random in it
        assert not np.array_equal(a.query_idx, c.query_idx)


def test_cifar10_54k_sizes_and_per_class_counts():
    labels, names = cifar_like()
    s = get_protocol("cifar10-54k").split(labels, names, seed=0)
    assert s.sizes() == {"query": 1000, "train": 5000, "database": 54000}
    assert np.bincount(labels[s.query_idx]).tolist() == [100] * 10
    assert np.bincount(labels[s.train_idx]).tolist() == [500] * 10
    assert len(np.intersect1d(s.train_idx, s.db_idx)) == 0
    # drawn from the pooled 60k: queries come from both source splits
    assert {"train", "test"} <= set(names[s.query_idx].tolist())
    assert len(np.union1d(np.union1d(s.query_idx, s.train_idx), s.db_idx)) == 60000
    assert get_protocol("cifar10-54k").topk == 54000


def test_cifar10_59k_database_holds_the_training_images():
    labels, names = cifar_like()
    s = get_protocol("cifar10-59k").split(labels, names, seed=0)
    assert s.sizes() == {"query": 1000, "train": 5000, "database": 59000}
    assert np.isin(s.train_idx, s.db_idx).all()
    assert get_protocol("cifar10-59k").topk is None


def test_cifar10_50k_follows_the_source_split():
    labels, names = cifar_like()
    p = get_protocol("cifar10-50k")
    s = p.split(labels, names)
    assert s.sizes() == {"query": 10000, "train": 50000, "database": 50000}
    assert (names[s.query_idx] == "test").all() and (names[s.db_idx] == "train").all()
    assert p.topk == 1000
    with pytest.raises(ConfigError, match="pass split_names"):
        p.split(labels)


def test_folder_split_ratios_per_class():
    labels = np.repeat(np.arange(3), [10, 21, 40])
    s = get_protocol("folder-split", query_ratio=0.2, train_ratio=0.5).split(labels, seed=1)
    # rounded half up per class: queries 2, 4, 8; training 5, 11 (10.5 -> 11), 20
    assert np.bincount(labels[s.query_idx]).tolist() == [2, 4, 8]
    assert np.bincount(labels[s.train_idx]).tolist() == [5, 11, 20]
    assert s.sizes()["database"] == 71 - 14  # everything but the queries
    s = get_protocol("folder-split", query_ratio=0.2, train_ratio=0.5, database="rest").split(labels, seed=1)
    assert s.sizes()["database"] == 71 - 14 - 36
    with pytest.raises(ConfigError, match="their sum at most 1"):
        get_protocol("folder-split", query_ratio=0.6, train_ratio=0.5)


def test_leave_one_out_within_split():
    labels = np.repeat(np.arange(4), 25)
    p = get_protocol("leave-one-out")
    assert p.topk == 20 and p.leave_one_out
    s = p.split(labels, seed=0)
    assert np.bincount(labels[s.train_idx]).tolist() == [15] * 4
    assert np.bincount(labels[s.query_idx]).tolist() == [10] * 4
    assert s.leave_one_out
    labels2, names = cifar_like()
    s2 = p.split(labels2, names)
    assert (names[s2.query_idx] == "test").all() and s2.sizes()["query"] == 10000


def test_multi_label_per_class_draw():
    y = multi_hot(20000, 21)
    s = get_protocol("nuswide-21").split(y, seed=0)
    assert s.sizes()["query"] == 2100 and s.sizes()["train"] == 10500
    assert (y[s.query_idx].sum(axis=1) >= 1).all()
    with pytest.raises(ConfigError, match="multi-label"):
        get_protocol("nuswide-21").split(np.zeros(10, int))
    with pytest.raises(ConfigError, match="single-label"):
        get_protocol("cifar10-54k").split(multi_hot())


def test_too_few_images_per_class_says_so():
    labels = np.repeat(np.arange(10), 300)
    with pytest.raises(ConfigError, match="class 0 has 200 images left to draw training images from; cifar10-54k takes 500"):
        get_protocol("cifar10-54k").split(labels)


def test_reduced_subsamples_per_class_and_says_so():
    labels, names = cifar_like()
    p = get_protocol("cifar10-54k").reduced(200, 2000, seed=1, n_train=1000)
    s = p.split(labels, names, seed=0)
    assert s.sizes() == {"query": 200, "train": 1000, "database": 2000}
    assert np.bincount(labels[s.query_idx]).tolist() == [20] * 10
    assert np.bincount(labels[s.db_idx]).tolist() == [200] * 10
    assert "REDUCED" in p.describe() and p.name == "cifar10-54k-reduced"
    full = get_protocol("cifar10-54k").split(labels, names, seed=0)
    assert np.isin(s.query_idx, full.query_idx).all() and np.isin(s.db_idx, full.db_idx).all()
    # a database that holds the training images keeps them when reduced
    s59 = get_protocol("cifar10-59k").reduced(100, 1500, n_train=500).split(labels, names)
    assert np.isin(s59.train_idx, s59.db_idx).all() and s59.sizes()["database"] == 1500
    # round trip of the protocol itself through its dict
    assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_split_file_round_trip(tmp_path):
    labels, names = cifar_like()
    ids = [f"{n}/{i:05d}.jpg" for i, n in enumerate(names)]
    s = get_protocol("cifar10-54k").reduced(100, 1000).split(labels, names, seed=7)
    path = s.save(tmp_path / "split.json", ids)
    doc = json.loads(path.read_text())
    assert doc["protocol"] == "cifar10-54k-reduced" and doc["protocol_version"] == 1 and doc["seed"] == 7
    assert doc["query"][0] == ids[s.query_idx[0]]
    assert "REDUCED" in doc["protocol_info"]["words"]
    back = Split.load(path, ids)
    for a, b in ((s.query_idx, back.query_idx), (s.train_idx, back.train_idx), (s.db_idx, back.db_idx)):
        np.testing.assert_array_equal(a, b)
    assert (back.protocol, back.version, back.seed) == (s.protocol, s.version, s.seed)
    # the ids find their images even when the dataset lists them in another order
    perm = np.random.default_rng(0).permutation(len(ids))
    moved = Split.load(path, [ids[i] for i in perm])
    np.testing.assert_array_equal(np.sort(perm[moved.query_idx]), s.query_idx)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_split_load_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Split.load(tmp_path / "nope.json", [])
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="not a deephash split file"):
        Split.load(tmp_path / "x.json", [])
    labels = np.repeat(np.arange(2), 10)
    s = get_protocol("folder-split").split(labels)
    ids = [f"img{i}" for i in range(20)]
    s.save(tmp_path / "s.json", ids)
    with pytest.raises(DataError, match="not in this dataset"):
        Split.load(tmp_path / "s.json", ids[:5])
    with pytest.raises(ConfigError, match="only 3 image ids were given"):
        s.save(tmp_path / "t.json", ids[:3])
