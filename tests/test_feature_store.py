"""The per-image feature store (issue 15 item 6): content-keyed, found by stat key without reading
the file, reused by moved copies, interrupted chunks ignored."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deephash.features import store as store_mod
from deephash.features.store import FeatureStore, content_key


def files(tmp_path, n=5):
    d = tmp_path / "imgs"
    d.mkdir()
    out = []
    for i in range(n):
        p = d / f"{i}.jpg"
        p.write_bytes(bytes([i]) * (100 + i))
        out.append(p)
    return out


def test_round_trip_and_reopen(tmp_path):
    paths = files(tmp_path)
    s = FeatureStore(tmp_path / "store", dim=4)
    keys = s.keys_of(paths)
    assert keys == [content_key(p) for p in paths] and len(set(keys)) == 5
    feats = np.arange(16, dtype=np.float32).reshape(4, 4)
    kept = [0, 1, 3, 4]  # the third image failed to decode: nothing is stored for it
    s.add([paths[i] for i in kept], [keys[i] for i in kept], feats)
    again = FeatureStore(tmp_path / "store", dim=4)
    assert [again.has(k) for k in keys] == [True, True, False, True, True]
    np.testing.assert_array_equal(again.get([keys[4], keys[0]]), feats[[3, 0]])
    with pytest.raises(KeyError):
        again.get([keys[2]])


def test_a_known_file_is_found_without_reading_it(tmp_path, monkeypatch):
    paths = files(tmp_path)
    s = FeatureStore(tmp_path / "store", dim=2)
    keys = s.keys_of(paths)
    s.add(paths, keys, np.ones((5, 2), np.float32))

    def no_read(p):
        raise AssertionError(f"{p} was read although its stat key is known")

    monkeypatch.setattr(store_mod, "content_key", no_read)
    assert FeatureStore(tmp_path / "store", dim=2).keys_of(paths) == keys


def test_a_moved_copy_reuses_the_features_and_a_changed_file_does_not(tmp_path):
    paths = files(tmp_path)
    s = FeatureStore(tmp_path / "store", dim=2)
    keys = s.keys_of(paths)
    s.add(paths, keys, np.arange(10, dtype=np.float32).reshape(5, 2))
    moved = tmp_path / "elsewhere"
    shutil.copytree(paths[0].parent, moved)  # new paths, new mtimes, same bytes
    k2 = s.keys_of(sorted(moved.glob("*.jpg")))
    assert k2 == keys
    np.testing.assert_array_equal(s.get(k2), np.arange(10, dtype=np.float32).reshape(5, 2))
    paths[1].write_bytes(b"other content")
    assert not s.has(s.keys_of([paths[1]])[0])


def test_an_interrupted_chunk_does_not_exist_and_other_writers_are_seen(tmp_path):
    paths = files(tmp_path)
    a = FeatureStore(tmp_path / "store", dim=2)
    b = FeatureStore(tmp_path / "store", dim=2)
    keys = a.keys_of(paths)
    np.save(tmp_path / "store" / "dead.f32.npy", np.zeros((5, 2), np.float32))  # a writer killed before its keys
    a.add(paths[:2], keys[:2], np.ones((2, 2), np.float32))
    assert not b.has(keys[0])
    b.reload()
    assert [b.has(k) for k in keys] == [True, True, False, False, False]
    assert len(FeatureStore(tmp_path / "store", dim=2)) == 2


def test_unreadable_files_have_no_key_and_mismatched_rows_are_refused(tmp_path):
    s = FeatureStore(tmp_path / "store", dim=2)
    missing = tmp_path / "nope.jpg"
    assert s.keys_of([missing]) == [None] and not s.has(None)
    with pytest.raises(ValueError, match="must agree"):
        s.add([missing], ["k"], np.zeros((0, 2), np.float32))
    assert len(s) == 0
