"""HashIndex: exact search against a slow reference, add/remove, persistence, corrupt files, re-ranking."""
import numpy as np
import pytest

from deephash.errors import ConfigError, DataError, IndexChangedError, IndexFormatError
from deephash.index import HashIndex, hamming_matrix, pack_bits, unpack_bits


def slow_knn(q_bits, db_bits, k):
    out = []
    for q in q_bits:
        d = [(int(np.sum(q != b)), j) for j, b in enumerate(db_bits)]
        d.sort()
        out.append(d[:k])
    return out


def test_pack_unpack_roundtrip_and_contract():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (5, 24)).astype(np.uint8)
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8 and packed.shape == (5, 3)
    assert (unpack_bits(packed) == bits).all()
    with pytest.raises(ConfigError, match="multiple of 8"):
        pack_bits(rng.integers(0, 2, (5, 12)))


@pytest.mark.parametrize("n_bits", [8, 64, 128])
def test_search_matches_slow_reference(n_bits):
    rng = np.random.default_rng(n_bits)
    db_bits = rng.integers(0, 2, (300, n_bits)).astype(np.uint8)
    db_bits[100:150] = db_bits[0]  # heavy ties
    q_bits = np.concatenate([db_bits[:3], rng.integers(0, 2, (4, n_bits)).astype(np.uint8)])
    idx = HashIndex(n_bits)
    idx.add(pack_bits(db_bits))
    D, I = idx.search(pack_bits(q_bits), 60)
    ref = slow_knn(q_bits, db_bits, 60)
    assert D.tolist() == [[d for d, _ in r] for r in ref]
    # the set of ids at each distance must match (which member of a boundary tie FAISS keeps may differ)
    for qi, r in enumerate(ref):
        kth = r[-1][0]
        inner = sorted(j for d, j in r if d < kth)
        assert sorted(int(i) for i, d in zip(I[qi], D[qi]) if d < kth) == inner


def test_search_pads_like_faiss():
    idx = HashIndex(16)
    idx.add(pack_bits(np.eye(16, dtype=np.uint8)[:3]))
    D, I = idx.search(pack_bits(np.zeros((1, 16), np.uint8)), 5)
    assert I.shape == (1, 5) and (I[0, 3:] == -1).all() and (D[0, 3:] == 17).all()
    assert D.dtype == np.int32 and I.dtype == np.int64


def test_add_remove_and_persistence_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    codes = pack_bits(rng.integers(0, 2, (200, 64)))
    feats = rng.normal(size=(200, 8)).astype(np.float32)
    idx = HashIndex(64, meta={"model": "m.pt"}, class_names=["a", "b"])
    ids = idx.add(codes, paths=[f"img/{i}.jpg" for i in range(200)], labels=rng.integers(0, 2, 200), features=feats)
    assert ids.tolist() == list(range(200))
    assert idx.remove([5, 7, 199]) == 3
    new = idx.add(codes[:2], paths=["x.jpg", "y.jpg"], labels=[0, 1], features=feats[:2])
    assert new.tolist() == [200, 201]  # ids are never reused
    with pytest.raises(DataError, match="unknown image id"):
        idx.remove([5])
    q = codes[:10]
    D0, I0 = idx.search(q, 20)
    p1 = idx.save(tmp_path / "a.dhi")
    idx2 = HashIndex.load(p1)
    p2 = idx2.save(tmp_path / "b.dhi")
    idx3 = HashIndex.load(p2)
    assert p1.read_bytes() == p2.read_bytes()
    for other in (idx2, idx3):
        D, I = other.search(q, 20)
        assert (D == D0).all() and (I == I0).all()
        assert other.paths == idx.paths and other.meta == {"model": "m.pt"} and other.class_names == ["a", "b"]
        assert (other.labels == idx.labels).all()


def test_corrupt_and_truncated_files_give_clear_errors(tmp_path):
    idx = HashIndex(32)
    idx.add(pack_bits(np.random.default_rng(0).integers(0, 2, (50, 32))))
    good = idx.save(tmp_path / "i.dhi")
    data = good.read_bytes()
    (tmp_path / "trunc.dhi").write_bytes(data[:-40])
    with pytest.raises(IndexFormatError, match="truncated"):
        HashIndex.load(tmp_path / "trunc.dhi")
    bad = bytearray(data)
    bad[-20] ^= 0xFF
    (tmp_path / "flip.dhi").write_bytes(bytes(bad))
    with pytest.raises(IndexFormatError, match="checksum"):
        HashIndex.load(tmp_path / "flip.dhi")
    (tmp_path / "other.dhi").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(IndexFormatError, match="not a deephash index"):
        HashIndex.load(tmp_path / "other.dhi")
    newer = bytearray(data)
    newer[8] = 99
    (tmp_path / "newer.dhi").write_bytes(bytes(newer))
    with pytest.raises(IndexFormatError, match="newer deephash"):
        HashIndex.load(tmp_path / "newer.dhi")
    # the good file is untouched by the failed reads
    assert HashIndex.load(good).search(idx.codes[:1], 1)[1][0, 0] == 0


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    idx = HashIndex(8)
    idx.add(pack_bits(np.ones((3, 8), np.uint8)))
    p = idx.save(tmp_path / "i.dhi")
    before = p.read_bytes()
    idx.add(pack_bits(np.zeros((3, 8), np.uint8)))
    import deephash.index.hash_index as hi

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hi.json, "dumps", boom)
    with pytest.raises(RuntimeError):
        idx.save(p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["i.dhi"]


def test_radius_search_is_exact():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, (400, 16)).astype(np.uint8)
    idx = HashIndex(16)
    idx.add(pack_bits(bits))
    q = pack_bits(bits[:5])
    dist = hamming_matrix(q, idx.codes)
    for r in (0, 2, 5):
        res = idx.search_radius(q, r)
        for qi, (D, I) in enumerate(res):
            assert sorted(I.tolist()) == np.flatnonzero(dist[qi] <= r).tolist()
            assert (np.diff(D) >= 0).all()


def test_rerank_pool_grows_and_ranks_by_feature_distance():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, (500, 32)).astype(np.uint8)
    feats = rng.normal(size=(500, 6)).astype(np.float32)
    idx = HashIndex(32, feature_dtype="float32")
    idx.add(pack_bits(bits), features=feats)
    qf = rng.normal(size=(1, 6)).astype(np.float32)
    res = idx.search_rerank(pack_bits(bits[:1]), qf, 10, radius=0, min_pool=50)[0]
    ham = hamming_matrix(pack_bits(bits[:1]), idx.codes)[0]
    assert res.pool_size >= 50 and res.radius > 0
    pool = np.flatnonzero(ham <= res.radius)
    assert res.pool_size == len(pool)
    eu = np.linalg.norm(feats[pool] - qf, axis=1)
    assert res.ids.tolist() == pool[np.argsort(eu, kind="stable")][:10].tolist()
    with pytest.raises(ConfigError, match="stores no float features"):
        HashIndex(32).search_rerank(pack_bits(bits[:1]), qf, 5)


def test_bad_inputs_say_what_was_expected():
    idx = HashIndex(64)
    with pytest.raises(ConfigError, match="uint8"):
        idx.add(np.zeros((2, 8), np.int64))
    with pytest.raises(ConfigError, match="64-bit"):
        idx.add(np.zeros((2, 4), np.uint8))
    with pytest.raises(ConfigError, match="n_bits must be a multiple of 8"):
        HashIndex(12)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        idx.search(np.zeros((1, 8), np.uint8), 0)


def test_asymmetric_search_matches_a_slow_sort_and_pq_indexes_refuse_hamming_search(tmp_path):
    from deephash.index import PQIndex, new_index, open_index

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (300, 4), dtype=np.uint8)
    ix = PQIndex(32)
    ix.add(codes, ids=np.arange(1000, 1300))
    ix.remove([1003, 1010])
    D = rng.integers(0, 6, (7, len(ix))).astype(np.float32)  # many ties: order must follow insertion
    d, ids = ix.search(lambda c: D if c.shape[0] == len(ix) else None, 12)
    for q in range(7):
        order = sorted(range(len(ix)), key=lambda r: (D[q, r], r))[:12]
        assert ids[q].tolist() == ix.ids[order].tolist() and np.array_equal(d[q], D[q, order])
    d, ids = ix.search(lambda c: D, 400)  # more than the index holds: padded like FAISS
    assert (ids[:, len(ix):] == -1).all() and np.isinf(d[:, len(ix):]).all()
    for call, why in ((lambda: ix.search(codes[:1], 3), "its query is the model's distance function"),
                      (lambda: ix.search_radius(codes[:1], 2), "a radius is a Hamming distance"),
                      (lambda: ix.snapshot().within(lambda c: D[:1], 2), "a radius is a Hamming distance"),
                      (lambda: ix.search_rerank(codes[:1], np.zeros((1, 4)), 3), "re-rank orders a Hamming pool")):
        with pytest.raises(ConfigError, match=why) as e:
            call()
        assert "asymmetric distance" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="one column per indexed item"):
        ix.search(lambda c: D[:, :5], 3)
    assert ix.search_path == "asymmetric" and ix.stats()["searcher"] == "asymmetric"
    ix.save(tmp_path / "pq.dhi")
    for back in (HashIndex.load(tmp_path / "pq.dhi"), PQIndex.load(tmp_path / "pq.dhi"), open_index(tmp_path / "pq.dhi")):
        assert type(back) is PQIndex and back.code_kind == "pq" and np.array_equal(back.codes, ix.codes)
    HashIndex(32).save(tmp_path / "h.dhi")
    assert type(open_index(tmp_path / "h.dhi")) is HashIndex
    with pytest.raises(ConfigError, match="holds 'hamming' codes, not the 'pq' codes of PQIndex"):
        PQIndex.load(tmp_path / "h.dhi")
    with pytest.raises(ConfigError, match="code_kind must be one of"):
        new_index(tmp_path / "x.dhi", 32, code_kind="opq")


def _journal_index(tmp_path, n=40, with_features=True):
    rng = np.random.default_rng(9)
    ix = HashIndex(32)
    ix.add(rng.integers(0, 256, (n, 4), dtype=np.uint8), paths=[f"p{i}" for i in range(n)],
           labels=rng.integers(0, 3, n), features=rng.normal(size=(n, 5)) if with_features else None)
    path = ix.save(tmp_path / "j.dhi")
    return ix, path, rng


def test_journal_replays_adds_and_removes_without_rewriting_the_index(tmp_path):
    ix, path, rng = _journal_index(tmp_path)
    on_disk = path.read_bytes()
    new = ix.add(rng.integers(0, 256, (3, 4), dtype=np.uint8), paths=["a", "b", "c"], labels=[2, 0, 1],
                 features=rng.normal(size=(3, 5)))
    ix.log_added(new)
    ix.remove([5, int(new[1])])
    ix.log_removed([5, int(new[1])])
    assert path.read_bytes() == on_disk and ix.journal_bytes > 0
    back = HashIndex.load(path)
    for a in ("codes", "ids", "labels", "features"):
        assert np.array_equal(getattr(back, a), getattr(ix, a)), a
    assert back.paths == ix.paths and back._next_id == ix._next_id
    ix.save(path)  # folds the journal in
    assert not path.with_name("j.dhi.journal").exists() and len(HashIndex.load(path)) == len(ix)


def test_an_interrupted_append_is_ignored_and_cut_off_by_the_next(tmp_path):
    ix, path, rng = _journal_index(tmp_path, with_features=False)
    journal = path.with_name("j.dhi.journal")
    a = ix.add(rng.integers(0, 256, (1, 4), dtype=np.uint8), labels=[1])
    ix.log_added(a)
    good = journal.read_bytes()
    b = ix.add(rng.integers(0, 256, (1, 4), dtype=np.uint8), labels=[2])
    ix.log_added(b)
    journal.write_bytes(journal.read_bytes()[:-3])  # the process died inside the second append
    back = HashIndex.load(path)
    assert int(a[0]) in back.ids and int(b[0]) not in back.ids
    back.remove([0])
    back.log_removed([0])  # the half record is cut off, not left in the middle of the journal
    assert journal.read_bytes().startswith(good)
    again = HashIndex.load(path)
    assert int(a[0]) in again.ids and 0 not in again.ids and int(b[0]) not in again.ids
    flipped = bytearray(journal.read_bytes())
    flipped[-6] ^= 0xFF  # a damaged record fails its checksum: the replay stops before it
    journal.write_bytes(bytes(flipped))
    assert 0 in HashIndex.load(path).ids


def test_a_journal_of_an_older_index_file_is_ignored(tmp_path):
    ix, path, rng = _journal_index(tmp_path, with_features=False)
    journal = path.with_name("j.dhi.journal")
    ix.remove([3])
    ix.log_removed([3])
    stale = journal.read_bytes()
    ix.save(path)  # the process dies after this rewrite, before the journal is deleted:
    journal.write_bytes(stale)
    back = HashIndex.load(path)  # the removal is in the new file; replaying it again would fail
    assert 3 not in back.ids and len(back) == len(ix)
    with pytest.raises(ConfigError, match="save it once"):
        HashIndex(32).log_removed([1])
    journal.write_bytes(b"NOTAJRNL" + stale[8:])
    with pytest.raises(IndexFormatError, match="not a deephash index journal"):
        HashIndex.load(path)


def test_adds_append_in_place_and_earlier_views_never_change():
    rng = np.random.default_rng(2)
    ix = HashIndex(64)
    ix.add(rng.integers(0, 256, (100, 8), dtype=np.uint8), labels=rng.integers(0, 3, 100),
           features=rng.normal(size=(100, 4)))
    snap = (ix.codes, ix.ids, ix.labels, ix.features)
    copies = [a.copy() for a in snap]
    ix.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), labels=[1], features=rng.normal(size=(1, 4)))
    buf = ix._buf["features"]  # the first add past a bulk load leaves room for a quarter more
    for _ in range(4):  # so these need no reallocation: no copy of the index per image
        ix.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), labels=[1], features=rng.normal(size=(1, 4)))
    assert ix._buf["features"] is buf and len(ix) == 105 and ix.features.shape == (105, 4)
    for a, c in zip(snap, copies):  # a snapshot taken before the adds still reads what it read
        assert np.array_equal(a, c)
    ix.remove([0, 103])
    for a, c in zip(snap, copies):  # removal builds new arrays too
        assert np.array_equal(a, c)
    assert ix.rows_of([104]).tolist() == [102] and ix.ids[:2].tolist() == [1, 2]
    for _ in range(300):  # growth past the room keeps every row
        ix.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), labels=[2], features=rng.normal(size=(1, 4)))
    assert len(ix) == 403 and ix.labels[-1] == 2 and ix.rows_of([404]).tolist() == [402]
    D, I = ix.search(ix.codes[-1:], 1)
    assert D[0, 0] == 0


def test_two_writers_never_overwrite_each_others_changes(tmp_path):
    """Two processes holding the same index (the service and `deephash index --update`): the one
    that writes second is told the file changed, instead of clobbering the first's records."""
    _, path, rng = _journal_index(tmp_path, with_features=False)
    a, b = HashIndex.load(path), HashIndex.load(path)
    new_a = a.add(rng.integers(0, 256, (1, 4), dtype=np.uint8), labels=[1])
    a.log_added(new_a)
    b.add(rng.integers(0, 256, (1, 4), dtype=np.uint8), labels=[2])
    with pytest.raises(IndexChangedError, match="records this process has not read"):
        b.log_added(b.ids[-1:])
    with pytest.raises(IndexChangedError):
        b.save(path)  # folding b's view in would drop a's record
    c = HashIndex.load(path)  # a reader that reloads sees a's change and can write after it
    assert int(new_a[0]) in c.ids
    c.remove([0])
    c.log_removed([0])
    a.remove([1])
    with pytest.raises(IndexChangedError):
        a.log_removed([1])
    c.save(path)  # c folds everything in; a's view is now of an older file
    with pytest.raises(IndexChangedError, match="index file was rewritten"):
        a.log_removed([1])
    final = HashIndex.load(path)
    assert int(new_a[0]) in final.ids and 0 not in final.ids and 1 in final.ids
