"""The index-backend contract (deephash.index.backend), parametrised over every backend: the local file
index of Hamming codes, the same file searched through FAISS's IVF, HNSW and multi-index structures,
the local file index of PQ codes (a real PQ model's, ranked by asymmetric distance) and Milvus (the
real standalone server the session fixture starts; no mock).

Every backend must give the same hits as a brute-force answer computed here the slow obvious way
(the FAISS structures with parameters that make them exact on this small database: IVF nprobe =
nlist, HNSW ef_search >= n, the multi-index with every flip of its 8-bit substrings), and — for
re-rank, whose pool rule lives in deephash.query — the same hits as the other backends. At
realistic parameters the FAISS structures are approximate: their recall@k is checked against a bound.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from deephash import query as Q
from deephash.errors import ConfigError, DataError
from deephash.index import hamming_matrix
from deephash.index.backend import INDEX_BACKENDS, open_index, new_index, scheme_of

# every registered backend must be here (test_every_registered_backend_is_tested)
BACKENDS = ["file", "milvus", "faiss-ivf", "faiss-hnsw", "faiss-mih"]
CODE_KINDS = ["hamming", "pq"]  # every local index type too (deephash.index.LOCAL_INDEX_TYPES)
#: parameters under which each FAISS structure answers exactly on _data()'s 32-bit codes (n <= 500)
EXACT = {"faiss-ivf": "nlist=8&nprobe=8", "faiss-hnsw": "ef_search=1024", "faiss-mih": "nhash=4&nflip=8"}
CLASSES = ["a", "b", "c"]
_names = itertools.count()


def _data(n: int = 400, n_bits: int = 32, dim: int = 8, seed: int = 0):
    """Clustered codes (many Hamming ties), float16-exact features, single labels, paths."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (6, n_bits), dtype=np.uint8)
    c = rng.integers(0, 6, n)
    bits = centres[c] ^ (rng.random((n, n_bits)) < 0.08).astype(np.uint8)
    codes = np.packbits(bits, axis=1)
    feats = rng.normal(size=(n, dim)).astype(np.float16).astype(np.float32)
    return codes, feats, rng.integers(0, 3, n), [f"img/{i:04d}.jpg" for i in range(n)]


def milvus_uri(milvus_server) -> str:
    if milvus_server.kind == "lite":
        pytest.skip("the backend tests need a Milvus server (milvus://HOST:PORT); milvus-lite is a file")
    return milvus_server.uri.replace("http://", "milvus://") + "/"


def _file_uri(request, tmp_path):
    yield str(tmp_path / "contract.dhi")


def _milvus_uri(request, tmp_path):
    uri = milvus_uri(request.getfixturevalue("milvus_server")) + f"dh_contract_{next(_names)}"
    yield uri
    try:
        open_index(uri).drop()
    except DataError:
        pass


def _faiss_uri(request, tmp_path):
    yield f"{request.param}:{tmp_path / 'contract.dhi'}?{EXACT[request.param]}"


WHERE = {"file": _file_uri, "milvus": _milvus_uri, **{name: _faiss_uri for name in EXACT}}


def test_every_registered_backend_is_tested():
    from deephash.index import LOCAL_INDEX_TYPES  # registers every backend and index type

    assert sorted(INDEX_BACKENDS) == sorted(BACKENDS) == sorted(WHERE)
    assert sorted(EXACT) == sorted(n for n in BACKENDS if n.startswith("faiss-"))
    assert sorted(LOCAL_INDEX_TYPES) == sorted(CODE_KINDS) == sorted(k.code_kind for s, k in CONTRACT.values() if s == "file")
    assert {s for s, _ in CONTRACT.values()} == set(BACKENDS)


@pytest.fixture(params=BACKENDS)
def backend_uri(request, tmp_path):
    """Where a fresh index of this backend goes (dropped after the test)."""
    yield from WHERE[request.param](request, tmp_path)


def _build(uri: str, codes, feats, labels, paths, code_kind: str = "hamming"):
    ix = new_index(uri, codes.shape[1] * 8, class_names=CLASSES, meta={"model_identity": {"method": "t", "bits": 32, "digest": "0"}},
                   feature_dim=feats.shape[1], labels="single", code_kind=code_kind)
    ix.add(codes, ids=np.arange(len(codes)) * 2 + 5, paths=paths, labels=labels, features=feats)
    ix.finish()
    return open_index(uri)


def _brute(codes, feats, labels, ids, q, qf, k=None, radius=None, cls=None):
    """The rule of deephash.query, the slow obvious way: candidates (class, radius), ordered by
    (Hamming, feature distance, id); the first k."""
    d = hamming_matrix(q, codes)[0]
    fd = np.sqrt(((feats - qf) ** 2).sum(1))
    rows = [r for r in range(len(codes)) if (cls is None or labels[r] == cls) and (radius is None or d[r] <= radius)]
    rows.sort(key=lambda r: (d[r], np.float32(fd[r]), ids[r]))
    rows = rows if k is None else rows[:k]
    return [int(ids[r]) for r in rows], [int(d[r]) for r in rows]


def test_every_backend_answers_like_brute_force(backend_uri):
    codes, feats, labels, paths = _data()
    ix = _build(backend_uri, codes, feats, labels, paths)
    ids = np.arange(len(codes)) * 2 + 5
    assert scheme_of(backend_uri) in INDEX_BACKENDS and len(ix) == len(codes) and ix.n_bits == 32
    assert ix.class_names == CLASSES and ix.has_features and ix.has_labels and not ix.multi_label
    assert ix.meta["model_identity"]["method"] == "t"
    for qi in (0, 7, 123):
        q, qf = codes[qi : qi + 1], feats[qi : qi + 1]
        query = Q.Query(q, qf)
        for kw, ref in (({}, dict(k=10)), ({"radius": 3}, dict(radius=3)), ({"label": "b"}, dict(k=10, cls=1)),
                        ({"label": "c", "radius": 4}, dict(radius=4, cls=2))):
            h = Q.search(ix, query, 10 if "radius" not in kw else 10_000, **kw)
            want_ids, want_d = _brute(codes, feats, labels, ids, q, qf, **ref)
            assert h.ids.tolist() == want_ids and h.hamming.tolist() == want_d, kw
            js = Q.hit_json(h, ix.class_names)
            assert [r["path"] for r in js] == [paths[(i - 5) // 2] for i in want_ids]
            assert [r["label"] for r in js] == [CLASSES[labels[(i - 5) // 2]] for i in want_ids]
    # FAISS's contract: (D, I) padded, exact for BIN_FLAT; radius lists; a stored image as the query
    D, I = ix.search(codes[:3], 5)
    np.testing.assert_array_equal(D, np.sort(hamming_matrix(codes[:3], codes), axis=1)[:, :5])
    (d0, i0), = ix.search_radius(codes[:1], 2)
    assert sorted(i0.tolist()) == sorted(ids[hamming_matrix(codes[:1], codes)[0] <= 2].tolist())
    q = Q.Query.of_id(ix, 25)
    np.testing.assert_array_equal(q.code, codes[10:11])
    np.testing.assert_allclose(q.feature, feats[10:11])
    h = Q.search(ix, q, 5, exclude_self=True)
    assert 25 not in h.ids.tolist() and len(h) == 5
    with pytest.raises(DataError, match="unknown image id 6"):
        Q.Query.of_id(ix, 6)


def _check_brute(ix, codes, feats, labels, ids, queries=(0, 3, 40, 123)):
    """k-NN, radius and label queries against the brute-force answer over what the index holds."""
    for qi in queries:
        q, qf = codes[qi : qi + 1], feats[qi : qi + 1]
        for kw, ref in (({}, dict(k=10)), ({"radius": 4}, dict(radius=4)), ({"label": "a"}, dict(k=7, cls=0))):
            h = Q.search(ix, Q.Query(q, qf), ref.get("k", 10_000), **kw)
            want_ids, want_d = _brute(codes, feats, labels, ids, q, qf, **ref)
            assert h.ids.tolist() == want_ids and h.hamming.tolist() == want_d, (qi, kw)


def test_every_backend_adds_removes_reopens_and_reports(backend_uri):
    """add, remove, make durable (journal, then a rewrite), reopen / reconnect, stats — answers stay brute force's."""
    codes, feats, labels, paths = _data(n=500, seed=2)
    all_ids = np.arange(500) * 2 + 5
    ix = _build(backend_uri, codes[:450], feats[:450], labels[:450], paths[:450])
    new = ix.add(codes[450:], ids=all_ids[450:], paths=paths[450:], labels=labels[450:], features=feats[450:])
    gone = [5, 7, 905, 441 * 2 + 5]
    assert new.tolist() == all_ids[450:].tolist() and ix.remove(gone) == len(gone)
    keep = ~np.isin(all_ids, gone)
    held = codes[keep], feats[keep], labels[keep], all_ids[keep]
    _check_brute(ix, *held)
    ix.persist(new, gone)
    scheme = scheme_of(backend_uri)
    for rewritten in (False, True):  # reopened from the journal persist wrote; then from a rewritten file
        ix = open_index(backend_uri)
        assert len(ix) == 496 and ix.class_names == CLASSES and ix.meta["model_identity"]["method"] == "t"
        _check_brute(ix, *held)
        st = ix.stats()
        assert st["backend"] == scheme
        ans = Q.answer_json(Q.search(ix, Q.Query(codes[:1]), 3), Q.Query(codes[:1]), ix.class_names)
        if scheme.startswith("faiss-"):  # approximate, and says so with its parameters
            assert st["search"]["name"] == scheme[len("faiss-"):] and st["search"]["exact"] is False
            assert ans["search"] == st["search"] and "approximate: FAISS" in Q.format_table(ans)
        elif scheme == "file":
            assert st["search"]["exact"] is True and ans["search"]["exact"] is True
        assert ix.persist((), (), fold_ratio=0.0) is (scheme != "milvus" and not rewritten)


def test_add_remove_reopen_and_rerank_agree_across_backends(tmp_path, milvus_server):
    codes, feats, labels, paths = _data(n=500, seed=1)
    uris = {"file": str(tmp_path / "a.dhi"), "milvus": milvus_uri(milvus_server) + f"dh_agree_{next(_names)}",
            **{name: f"{name}:{tmp_path / name}.dhi?{params}" for name, params in EXACT.items()}}
    ixs = {name: _build(uri, codes[:450], feats[:450], labels[:450], paths[:450]) for name, uri in uris.items()}
    try:
        for name, ix in ixs.items():  # the same changes through the interface, made durable
            new = ix.add(codes[450:], ids=np.arange(450, 500) * 2 + 5, paths=paths[450:], labels=labels[450:],
                         features=feats[450:])
            assert ix.remove([5, 7, 905]) == 3
            ix.persist(new, [5, 7, 905])
        ixs = {name: open_index(uri) for name, uri in uris.items()}  # reopen / reconnect
        assert {len(ix) for ix in ixs.values()} == {497}
        for qi in (3, 40, 460):
            query = Q.Query(codes[qi : qi + 1], feats[qi : qi + 1])
            for kw in ({"rerank": Q.Rerank(min_pool=30)}, {"rerank": True, "label": "a"}, {"k": 20},
                       {"radius": 5, "exclude_self": True}):
                k = kw.pop("k", 10)
                answers = [Q.hit_json(Q.search(ix, query, k, **kw), ix.class_names) for ix in ixs.values()]
                assert all(a == answers[0] for a in answers[1:]), (qi, kw)
                assert all(r["id"] not in (5, 7, 905) for r in answers[0])
        with pytest.raises(ConfigError, match="unknown class 'zebra'"):
            Q.search(ixs["milvus"], Q.Query(codes[:1], feats[:1]), 3, label="zebra")
    finally:
        open_index(uris["milvus"]).drop()


def test_uris_choose_the_backend_and_bad_ones_say_what_was_expected(tmp_path):
    from deephash.index import HashIndex, MilvusIndex
    from deephash.index.milvus_index import auto_index_type, parse_milvus_uri

    assert scheme_of("runs/a.dhi") == "file" and scheme_of("file:runs/a.dhi") == "file"
    assert scheme_of("milvus://h:19530/c") == "milvus" and INDEX_BACKENDS["milvus"] is MilvusIndex
    assert INDEX_BACKENDS["file"] is HashIndex
    assert parse_milvus_uri("milvus://milvus.example:19531/scenes_64?nprobe=8") == (
        "http://milvus.example:19531", "scenes_64", {"nprobe": "8"})
    assert auto_index_type(999_999) == "BIN_FLAT" and auto_index_type(1_000_000) == "BIN_IVF_FLAT"
    with pytest.raises(ConfigError, match="a Milvus index is named milvus://HOST:PORT/COLLECTION; got 'milvus://h:1'"):
        open_index("milvus://h:1")
    with pytest.raises(ConfigError, match=r"put no credentials in the URI .*DEEPHASH_MILVUS_TOKEN"):
        open_index("milvus://user:secret@h:1/c")
    with pytest.raises(ConfigError, match="unknown index location scheme 'faiss'"):
        open_index("faiss://x/y")
    with pytest.raises(ConfigError, match="apply to server indexes"):
        new_index(tmp_path / "x.dhi", 64, index_type="ivf")
    with pytest.raises(DataError, match="does not exist"):
        open_index(tmp_path / "missing.dhi")
    from deephash.index import FaissFileBackend, local_path

    assert scheme_of("faiss-ivf:runs/a.dhi?nprobe=8") == "faiss-ivf" and isinstance(INDEX_BACKENDS["faiss-hnsw"], FaissFileBackend)
    assert scheme_of("odd:name.dhi") == "file" and local_path("faiss-mih:runs/a.dhi?nflip=2") == Path("runs/a.dhi")
    assert local_path("milvus://h:1/c") is None and local_path("file:x.dhi") == Path("x.dhi")
    with pytest.raises(ConfigError, match="faiss-ivf has no parameter 'nprob'; it takes nlist, nprobe"):
        new_index(f"faiss-ivf:{tmp_path}/x.dhi?nprob=3", 32)
    with pytest.raises(ConfigError, match="faiss-hnsw: ef_search must be an integer; got 'many'"):
        open_index(f"faiss-hnsw:{tmp_path}/x.dhi?ef_search=many")
    with pytest.raises(ConfigError, match="nprobe must be a positive integer; got 0"):
        new_index(f"faiss-ivf:{tmp_path}/x.dhi?nprobe=0", 32)
    with pytest.raises(ConfigError, match="a faiss-mih index is named faiss-mih:PATH"):
        open_index("faiss-mih:?nflip=1")
    with pytest.raises(ConfigError, match="IVF with nlist=64 needs at least 64 training codes; got 10"):
        ix = new_index(f"faiss-ivf:{tmp_path}/x.dhi?nlist=64", 32)
        ix.add(np.zeros((10, 4), np.uint8))
        ix.finish()


def test_the_file_records_its_structure_and_a_uri_can_change_it(tmp_path):
    """A plain path opens the structure the header records; other search parameters hold for a session;
    another structure is built and recorded at the next write; the FAISS structure is read back, not rebuilt."""
    from deephash.index.hash_index import read_header

    codes, feats, labels, paths = _data(n=300, seed=3)
    path = tmp_path / "s.dhi"
    _build(f"faiss-ivf:{path}?nprobe=2", codes, feats, labels, paths)
    head = read_header(path)
    assert head["search"] == {"name": "ivf", "nlist": 7, "nprobe": 2}  # nlist chosen: at most 300 / 39 lists
    assert {a["name"] for a in head["arrays"]} >= {"ann", "ann_rows"}
    ix = open_index(path)
    assert ix.search_info["name"] == "ivf" and ix.search_info["nprobe"] == 2
    assert open_index(f"faiss-ivf:{path}?nprobe=7").search_info["nprobe"] == 7  # a session's search parameter...
    assert read_header(path)["search"]["nprobe"] == 2  # ...leaves the file as it was
    ix = open_index(f"faiss-hnsw:{path}?ef_search=512")  # another structure: built, recorded at the next write
    _check_brute(ix, codes, feats, labels, np.arange(300) * 2 + 5, queries=(1, 2))
    assert ix.persist() is True and read_header(path)["search"] == {"name": "hnsw", "M": 16, "ef_construction": 40,
                                                                    "ef_search": 512}
    assert open_index(path).search_info["name"] == "hnsw"
    back = open_index(f"file:{path}")  # the stored graph is loaded, not built again: save -> load -> save is stable
    again = tmp_path / "again.dhi"
    back.save(again)
    assert read_header(again)["arrays"] == read_header(path)["arrays"]


def _popcount_distance(a: np.ndarray, b: np.ndarray) -> int:
    return sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b))


# measured 0.99, 1.0 and 0.85 (the multi-index at nflip=1 finds a code for sure only within 7 bits)
@pytest.mark.parametrize("uri_params, bound", [("faiss-ivf:{}?nprobe=2", 0.95), ("faiss-hnsw:{}", 0.95),
                                               ("faiss-mih:{}", 0.8)])
def test_faiss_backends_recall_at_realistic_parameters(tmp_path, uri_params, bound):
    """Clustered 64-bit codes (100 clusters, 12 % of bits flipped), 8,000 indexed, 40 queries from the same
    clusters; recall@10 counted with ties (a hit is good when no farther than the true 10th neighbour,
    distances computed bit by bit). Default parameters but for the one named."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 2, (100, 64), dtype=np.uint8)
    bits = centres[rng.integers(0, 100, 8_040)] ^ (rng.random((8_040, 64)) < 0.12).astype(np.uint8)
    codes = np.packbits(bits, axis=1)
    db, queries = codes[:8_000], codes[8_000:]
    uri = uri_params.format(tmp_path / "recall.dhi")
    ix = new_index(uri, 64)
    ix.add(db)
    ix.finish()
    ix = open_index(uri)
    assert ix.search_info["exact"] is False
    good = 0
    for q in queries:
        h = Q.search(ix, Q.Query(q[None]), 10)
        truth = sorted(_popcount_distance(q, c) for c in db)
        # the multi-index may find fewer than k codes (a missing hit counts as a miss); distances are true ones
        assert len(h) <= 10 and [_popcount_distance(q, db[i]) for i in h.ids] == h.hamming.tolist()
        good += sum(d <= truth[9] for d in h.hamming.tolist())
    recall = good / (10 * len(queries))
    assert recall >= bound, f"{uri}: recall@10 {recall:.3f}"


@pytest.mark.parametrize("scheme", ["faiss-hnsw", "faiss-mih"])
def test_removed_codes_are_masked_until_a_rewrite_rebuilds_the_structure(tmp_path, scheme):
    """HNSW and the multi-index cannot remove from FAISS: removed codes are masked (never returned), and
    once they pass a quarter of the structure the next write builds it from the codes left."""
    codes, feats, labels, paths = _data(n=300, seed=4)
    ids = np.arange(300) * 2 + 5
    uri = f"{scheme}:{tmp_path / 'm.dhi'}?{EXACT[scheme]}"
    ix = _build(uri, codes, feats, labels, paths)
    gone = ids[::4][:50]  # 50 of 300: under a quarter
    ix.remove(gone)
    ix.persist((), gone, fold_ratio=0.0)  # rewritten, the mask kept
    ix = open_index(uri)
    keep = ~np.isin(ids, gone)
    assert ix.search_info["masked"] == 50
    _check_brute(ix, codes[keep], feats[keep], labels[keep], ids[keep], queries=(1, 2, 3))
    more = ids[keep][:40]  # 90 of 300 masked: past a quarter
    ix.remove(more)
    ix.persist((), more, fold_ratio=0.0)
    ix = open_index(uri)
    keep &= ~np.isin(ids, more)
    assert ix.search_info["masked"] == 0 and len(ix) == 210
    _check_brute(ix, codes[keep], feats[keep], labels[keep], ids[keep], queries=(1, 2, 3))


# ----------------------------------------------------------------------------- one contract, every index type
class HammingKit:
    """Hamming codes (:func:`_data`) and the brute-force answer of deephash.query's Hamming rule."""

    code_kind, metric = "hamming", "hamming"

    def __init__(self) -> None:
        self.codes, self.feats, self.labels, self.paths = _data(n=500, seed=2)

    def query(self, row: int) -> Q.Query:
        return Q.Query(self.codes[row : row + 1], self.feats[row : row + 1])

    def brute(self, row: int, live: list[int], ids, k: int, cls=None) -> tuple[list[int], list[float]]:
        got, d = _brute(self.codes[live], self.feats[live], self.labels[live], ids[live], self.codes[row : row + 1],
                        self.feats[row : row + 1], k=k, cls=cls)
        return got, [float(x) for x in d]

    @staticmethod
    def hit_distances(h: Q.Hits) -> list[float]:
        return [float(x) for x in h.hamming]

    def check_faiss_contract(self, ix, rows: list[int], live: list[int], ids) -> None:
        D, I = ix.search(self.codes[rows], 5)  # the server picks which members of a tie at the 5th place come back
        np.testing.assert_array_equal(D, np.sort(hamming_matrix(self.codes[rows], self.codes[live]), axis=1)[:, :5])
        assert set(I.ravel().tolist()) <= set(ids[live].tolist())


class PQKit:
    """Codes of a real PQ model (deephash's ``pq``: FAISS k-means codebooks, 4 sub-spaces of 2 dims) and
    the brute-force asymmetric answer: each stored item decoded from the codebooks by hand, its squared
    L2 distance to the query's float features in float64, ordered by (distance, id)."""

    code_kind, metric = "pq", "asymmetric"

    def __init__(self) -> None:
        import warnings

        from deephash.hashers import create_hasher
        from deephash.hashers._training_size import SmallTrainingSetWarning

        rng = np.random.default_rng(3)
        centres = rng.normal(size=(6, 8)) * 3
        def draw(n):
            return (centres[rng.integers(0, 6, n)] + rng.normal(size=(n, 8))).astype(np.float16).astype(np.float32)
        with warnings.catch_warnings():  # 300 vectors for 256 centroids a sub-space: coarse codes, enough here
            warnings.simplefilter("ignore", SmallTrainingSetWarning)
            self.h = create_hasher("pq", 32, seed=0).fit(draw(300))
        feats = draw(500)
        feats[400:440] = feats[100:140]  # identical items: exact ties, ordered by id
        self.feats, self.codes = feats, self.h.encode(feats)
        self.labels = rng.integers(0, 3, 500)
        self.paths = [f"img/{i:04d}.jpg" for i in range(500)]

    def _distances(self, row: int):
        f = self.feats[row : row + 1]
        return lambda codes: self.h.query_distances(f, codes)

    def query(self, row: int) -> Q.Query:
        return Q.Query(self.codes[row : row + 1], self.feats[row : row + 1], distances=self._distances(row))

    def brute(self, row: int, live: list[int], ids, k: int, cls=None) -> tuple[list[int], list[float]]:
        q = self.feats[row].astype(np.float64)
        dist = {}
        for r in live:
            if cls is None or self.labels[r] == cls:
                item = np.concatenate([self.h.centroids_[m][self.codes[r, m]] for m in range(self.codes.shape[1])])
                dist[r] = float(((q - item) ** 2).sum())
        best = sorted(dist, key=lambda r: (dist[r], ids[r]))[:k]
        return [int(ids[r]) for r in best], [dist[r] for r in best]

    @staticmethod
    def hit_distances(h: Q.Hits) -> list[float]:
        return [float(x) for x in h.distance]

    def check_faiss_contract(self, ix, rows: list[int], live: list[int], ids) -> None:
        D, I = ix.search(lambda codes: self.h.query_distances(self.feats[rows], codes), 5)
        assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == (len(rows), 5)
        for j, row in enumerate(rows):
            want_ids, want_d = self.brute(row, live, ids, 5)
            assert I[j].tolist() == want_ids
            np.testing.assert_allclose(D[j], want_d, rtol=1e-4, atol=1e-4)


#: every index type behind the interface: (the backend's scheme, its codes and brute force)
CONTRACT = {"file": ("file", HammingKit), "pq": ("file", PQKit), "milvus": ("milvus", HammingKit),
            **{name: (name, HammingKit) for name in EXACT}}


@pytest.fixture(params=list(CONTRACT))
def contract(request, tmp_path):
    """(where a fresh index of this type goes, its kit); a Milvus collection is dropped after the test."""
    scheme, kit = CONTRACT[request.param]
    where = WHERE[scheme](request, tmp_path)
    yield next(where), kit()
    next(where, None)


def _check_answers(ix, kit, live: list[int], ids) -> None:
    for row in (live[3], live[150], live[-2]):  # every answer against the slow obvious one
        for label, cls in ((None, None), ("b", 1)):
            h = Q.search(ix, kit.query(row), 10, label=label)
            want_ids, want_d = kit.brute(row, live, ids, 10, cls)
            assert h.ids.tolist() == want_ids, (row, label)
            np.testing.assert_allclose(kit.hit_distances(h), want_d, rtol=1e-4, atol=1e-4)
            assert h.ranked_by.startswith(ix.metric)
            js = Q.hit_json(h, ix.class_names)
            assert [r["path"] for r in js] == [kit.paths[(i - 5) // 2] for i in want_ids]
            assert [r["label"] for r in js] == [CLASSES[kit.labels[(i - 5) // 2]] for i in want_ids]
    kit.check_faiss_contract(ix, [live[0], live[77]], live, ids)


def test_every_index_type_adds_removes_searches_reloads_and_counts(contract):
    """The contract on every index type: a build made durable and opened again (save/reload, reconnect) is
    of the type its codes need, answers like brute force, takes additions and removals, keeps them across
    a reopen, and counts them in its stats."""
    uri, kit = contract
    ids = np.arange(500) * 2 + 5
    ix = _build(uri, kit.codes[:450], kit.feats[:450], kit.labels[:450], kit.paths[:450], code_kind=kit.code_kind)
    kind = type(ix)
    assert ix.code_kind == kit.code_kind and ix.metric == ix.snapshot().metric == kit.metric and len(ix) == 450
    live = list(range(450))
    _check_answers(ix, kit, live, ids)
    new = ix.add(kit.codes[450:], ids=ids[450:], paths=kit.paths[450:], labels=kit.labels[450:], features=kit.feats[450:])
    assert new.tolist() == ids[450:].tolist()
    assert ix.remove([5, 7, 925]) == 3  # rows 0, 1 and 460
    ix.persist(new, [5, 7, 925])
    ix = open_index(uri)
    assert type(ix) is kind and len(ix) == 497
    live = [r for r in range(500) if r not in (0, 1, 460)]
    _check_answers(ix, kit, live, ids)
    st = ix.stats()
    counts = np.bincount(kit.labels[live], minlength=3)
    assert st["backend"] == scheme_of(uri) and st["per_class"] == dict(zip(CLASSES, counts.tolist()))
    with pytest.raises(DataError, match="unknown image id"):
        ix.remove([6])


def test_pq_index_ranks_by_asymmetric_distance_and_refuses_hamming_notions(tmp_path):
    """What a PQ index cannot do, it refuses with one line: a radius, a re-rank, a query without float
    features, Milvus (Hamming codes only); a stored image as the query excludes itself."""
    from deephash.index import HashIndex, MilvusIndex, PQIndex

    kit = PQKit()
    ids = np.arange(500) * 2 + 5
    ix = _build(str(tmp_path / "pq.dhi"), kit.codes, kit.feats, kit.labels, kit.paths, code_kind="pq")
    assert type(ix) is PQIndex and type(HashIndex.load(tmp_path / "pq.dhi")) is PQIndex
    for kw, why in (({"radius": 2}, "a radius is a Hamming distance"), ({"rerank": True}, "re-rank orders a Hamming pool")):
        with pytest.raises(ConfigError, match=why) as e:
            Q.search(ix, kit.query(3), 5, **kw)
        assert "asymmetric distance" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="ranks by asymmetric distance from the query's float features, which this query lacks"):
        Q.search(ix, Q.Query(kit.codes[:1]), 5)
    q = Q.Query.of_id(ix, 25)  # row 10: its stored code and features
    np.testing.assert_array_equal(q.code, kit.codes[10:11])
    q.distances = kit._distances(10)
    h = Q.search(ix, q, 5, exclude_self=True)
    assert 25 not in h.ids.tolist() and h.ids.tolist() == [i for i in kit.brute(10, list(range(500)), ids, 6)[0] if i != 25][:5]
    for make in (lambda: new_index("milvus://127.0.0.1:1/c", 32, code_kind="pq"),
                 lambda: MilvusIndex.from_hash_index(ix, "http://127.0.0.1:1", "c")):
        with pytest.raises(ConfigError, match="Milvus holds Hamming codes only; these are 'pq' codes"):
            make()
