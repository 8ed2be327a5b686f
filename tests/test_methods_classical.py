"""Classical baselines (SH, SDH, classifier codes, PQ) against slow, obvious references, and the
method-comparison bench on small synthetic data."""
import json
import math

import numpy as np
import pytest

from deephash.errors import UnknownNameError

from deephash.bench.methods_bench import _protocol_split, format_methods_markdown, run_methods_bench
from deephash.errors import ConfigError
from deephash.eval.metrics import mean_average_precision, relevance_matrix
from deephash.hashers import create_hasher
from deephash.hashers.classifier_codes import class_codebook
from deephash.index import hamming_matrix, unpack_bits


# ------------------------------------------------------------------------------------------ SH
def test_sh_eigenfunctions_recomputed_directly(blobs):
    X, _ = blobs
    h = create_hasher("sh", 24).fit(X)
    vals = h.transform(X[:20])
    V = (X[:20].astype(np.float64) - h.mean_.astype(np.float64)) @ h.pca_.astype(np.float64)
    for i in range(20):
        for b in range(24):
            d, k = int(h.mode_dims_[b]), int(h.mode_k_[b])
            expected = math.cos(k * math.pi / h.width_[d] * (V[i, d] - h.lo_[d]))
            assert vals[i, b] == pytest.approx(expected, abs=1e-5)
    # bits are the sign of the eigenfunction
    assert np.array_equal(unpack_bits(h.encode(X[:20])), (vals >= 0).astype(np.uint8))


def test_sh_picks_the_smoothest_modes(blobs):
    X, _ = blobs
    h = create_hasher("sh", 32).fit(X)
    # brute force: every single-direction mode k*pi/width_j, k = 1..64, then the 32 smallest
    cands = sorted(k * math.pi / w for w in h.width_ for k in range(1, 65))
    assert np.allclose(np.sort(h.omega_), cands[:32])
    assert np.allclose(h.omega_, h.mode_k_ * np.pi / h.width_[h.mode_dims_])
    # the PCA box contains the training data
    V = (X.astype(np.float64) - h.mean_) @ h.pca_.astype(np.float64)
    assert (V >= h.lo_ - 1e-4).all() and (V <= h.lo_ + h.width_ + 1e-4).all()


# ------------------------------------------------------------------------------------------ SDH
def test_sdh_objective_never_increases(blobs):
    X, y = blobs
    h = create_hasher("sdh", 16, n_anchors=200, n_outer=6, seed=3).fit(X, y)
    obj = h.objective_
    assert len(obj) == 7
    assert np.all(np.diff(obj) <= 1e-9 * np.abs(obj[:-1])), obj
    assert obj[-1] < 0.5 * obj[0]


def test_sdh_dcc_step_is_a_coordinate_minimiser():
    rng = np.random.default_rng(0)
    n, L, C = 40, 8, 3
    h = create_hasher("sdh", 8, n_dcc=2)
    W = rng.normal(size=(L, C))
    Y = np.eye(C)[rng.integers(0, C, n)]
    F = rng.normal(size=(n, L))
    nu = 0.3
    B0 = np.where(rng.random((n, L)) < 0.5, 1.0, -1.0)

    def f(B):
        return ((Y - B @ W) ** 2).sum() + nu * ((B - F) ** 2).sum()

    B1 = h._dcc(B0, Y @ W.T + nu * F, W)
    assert f(B1) <= f(B0) + 1e-12
    h.n_dcc = 4
    assert f(h._dcc(B0, Y @ W.T + nu * F, W)) <= f(B1) + 1e-12
    # the last column updated is exactly optimal given the others: no flip of one of its bits helps
    for i in range(n):
        B2 = B1.copy()
        B2[i, L - 1] *= -1
        assert f(B2) >= f(B1) - 1e-9


def test_sdh_codes_separate_classes(blobs):
    X, y = blobs
    rel = relevance_matrix(y, y)
    scores = {}
    for name in ("lsh", "sdh"):
        h = create_hasher(name, 32, seed=0)
        h.fit(X, y) if h.supervised else h.fit(X)
        c = h.encode(X)
        scores[name] = mean_average_precision(hamming_matrix(c, c), rel, 100)
    assert scores["sdh"] > scores["lsh"] + 0.05, scores


# ------------------------------------------------------------------------------------------ classifier codes
def test_classifier_codes_distance_zero_exactly_within_a_predicted_class(blobs):
    X, y = blobs
    h = create_hasher("classifier-codes", 32, n_iters=300).fit(X, y)
    pred = h.predict(X)
    assert (pred == y).mean() > 0.9 and h.train_accuracy_ > 0.9
    D = hamming_matrix(h.encode(X), h.encode(X))
    same = pred[:, None] == pred[None, :]
    assert (D[same] == 0).all()
    assert (D[~same] == 2 * (32 // 10)).all()  # one-hot repeated 3 times: every other class at distance 6


def test_class_codebook_rules():
    book = class_codebook(10, 32)
    assert book.shape == (10, 32) and (book.sum(1) == 3).all() and (book[:, 30:] == 0).all()
    assert book[3, 3] == book[3, 13] == book[3, 23] == 1
    D = (book[:, None, :] != book[None, :, :]).sum(2)
    assert (D[~np.eye(10, dtype=bool)] == 6).all()
    # more classes than bits: binary class ids, still distinct
    book = class_codebook(100, 16)
    assert len({r.tobytes() for r in book}) == 100 and (book[:, 14:] == 0).all()
    assert list(book[5, :7]) == [0, 0, 0, 0, 1, 0, 1]
    with pytest.raises(ConfigError, match="cannot give 300 classes distinct 8-bit codes"):
        class_codebook(300, 8)


# ------------------------------------------------------------------------------------------ PQ
def test_pq_adc_distances_match_a_loop(blobs):
    X, _ = blobs
    h = create_hasher("pq", 48, n_iter=10).fit(X)  # M = 6 sub-spaces over 64 dims: 11,11,11,11,10,10
    assert list(np.diff(h.bounds_)) == [11, 11, 11, 11, 10, 10]
    codes = h.encode(X[:50])
    assert codes.shape == (50, 6) and codes.dtype == np.uint8
    Q = X[100:105]
    D = h.query_distances(Q, codes)
    for i in range(len(Q)):
        for j in range(len(codes)):
            ref = 0.0
            for m in range(6):
                a, b = h.bounds_[m], h.bounds_[m + 1]
                ref += float(((Q[i, a:b].astype(np.float64) - h.centroids_[m][codes[j, m]]) ** 2).sum())
            assert D[i, j] == pytest.approx(ref, rel=1e-4, abs=1e-3)
    # ADC = squared distance to the reconstruction
    R = h.reconstruct(codes)
    assert np.allclose(D, ((Q[:, None, :] - R[None, :, :]) ** 2).sum(2), rtol=1e-4, atol=1e-3)


def test_pq_encodes_to_the_nearest_centroid(blobs):
    X, _ = blobs
    h = create_hasher("pq", 16, n_iter=10).fit(X)
    codes = h.encode(X[:30])
    for i in range(30):
        for m in range(2):
            a, b = h.bounds_[m], h.bounds_[m + 1]
            d = ((h.centroids_[m] - X[i, a:b]) ** 2).sum(1)
            assert d[codes[i, m]] <= d.min() + 1e-4
    assert np.array_equal(unpack_bits(codes), h.transform(X[:30]).astype(np.uint8))
    with pytest.raises(ConfigError, match="at least 256 training vectors"):
        create_hasher("pq", 16).fit(X[:100])


# ------------------------------------------------------------------------------------------ the bench
def _synthetic(n_per=650, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim)).astype(np.float32) * 2
    y = np.repeat(np.arange(10), n_per)
    X = centres[y] + rng.normal(size=(len(y), dim)).astype(np.float32) * 1.5
    splits = np.where(np.arange(len(y)) % n_per < n_per // 6, "test", "train")
    return X, y, splits


def test_protocol_splits_follow_their_definitions():
    X, y, splits = _synthetic()
    s = _protocol_split("cifar10-54k", y, splits, seed=0, n_query=None)
    assert len(s.query) == 1000 and len(s.train) == 5000 and len(s.database) == len(y) - 6000
    assert (np.bincount(y[s.query]) == 100).all() and (np.bincount(y[s.train]) == 500).all()
    assert not set(s.query) & set(s.train) and not set(s.database) & (set(s.query) | set(s.train))
    assert s.map_at == 54000  # the protocol's mAP@54000, i.e. over the whole database
    s2 = _protocol_split("cifar10-54k", y, splits, seed=1, n_query=None)
    assert not np.array_equal(s.query, s2.query)
    s = _protocol_split("cifar10-50k", y, splits, seed=0, n_query=None)
    assert np.array_equal(s.query, np.flatnonzero(splits == "test"))
    assert np.array_equal(np.sort(s.database), np.flatnonzero(splits == "train"))
    assert np.array_equal(s.train, np.flatnonzero(splits == "train"))
    # the database is in a seeded random order, so ties are not broken by class (CIFAR-10 files are in class order)
    assert not np.array_equal(s.database, np.sort(s.database))
    assert np.array_equal(s.database, _protocol_split("cifar10-50k", y, splits, seed=0, n_query=None).database)
    assert s.map_at == 1000
    s = _protocol_split("cifar10-50k", y, splits, seed=0, n_query=200)
    assert len(s.query) == 200 and set(s.query) <= set(np.flatnonzero(splits == "test"))
    with pytest.raises(UnknownNameError, match="unknown protocol 'nope'; known protocols: cifar10-50k"):
        _protocol_split("nope", y, splits, seed=0, n_query=None)


def test_run_methods_bench_writes_rows_for_every_method(tmp_path):
    X, y, splits = _synthetic(n_per=300, dim=32)
    jp, mp = tmp_path / "bench.json", tmp_path / "bench.md"
    r = run_methods_bench(X, y, splits, methods=["lsh", "pq", "classifier-codes", "sh"], bits=(16,),
                          protocol="cifar10-50k", n_query=100, json_path=jp, md_path=mp,
                          method_params={"classifier-codes": {"n_iters": 50}})
    rows = {(x["method"], x["bits"]): x for x in r["results"]}
    assert set(rows) == {("lsh", 16), ("pq", 16), ("classifier-codes", 16), ("sh", 16), ("float-knn", None)}
    for row in rows.values():
        assert "error" not in row and 0.0 <= row["map"] <= 1.0 and row["query_s"] >= 0
    assert rows[("pq", 16)]["distance"] == "asymmetric" and rows[("lsh", 16)]["distance"] == "hamming"
    assert rows[("float-knn", None)]["map"] > rows[("lsh", 16)]["map"]
    saved = json.loads(jp.read_text())
    assert saved["protocol"] == "cifar10-50k" and saved["metric"] == "mAP@1000" and len(saved["results"]) == 5
    assert saved["protocol_detail"]["n_query"] == 100
    md = mp.read_text()
    assert "| pq | 16 |" in md and "| float-knn | — |" in md and "mAP@1000" in md
    # resume keeps finished rows (identical numbers, no retraining) and adds the new bit length
    r2 = run_methods_bench(X, y, splits, methods=["lsh", "pq"], bits=(16, 32), protocol="cifar10-50k", n_query=100,
                           json_path=jp, resume=True)
    rows2 = {(x["method"], x["bits"]): x for x in r2["results"]}
    assert rows2[("pq", 16)]["train_s"] == rows[("pq", 16)]["train_s"] and ("pq", 32) in rows2
    # rows of methods this call did not run are kept
    assert rows2[("sh", 16)] == rows[("sh", 16)] and len(r2["results"]) == 7


def test_run_methods_bench_records_a_failing_method_and_goes_on():
    X, y, splits = _synthetic(n_per=300, dim=8)
    r = run_methods_bench(X, y, splits, methods=["itq", "lsh"], bits=(16,), protocol="demo", n_query=100)
    rows = {x["method"]: x for x in r["results"]}
    assert "needs n_bits <= feature dim" in rows["itq"]["error"] and "map" in rows["lsh"]
    with pytest.raises(ConfigError, match="unknown method"):
        run_methods_bench(X, y, splits, methods=["nope"], bits=(16,))


def test_methods_bench_subsamples_training_and_adds_coarse_to_fine(tmp_path):
    """--n-train draws the training images equally per class from the protocol's; --rerank-queries
    adds DLBHC's coarse-to-fine search, equal to calling the evaluation on the same codes directly."""
    from deephash.eval.retrieval import coarse_to_fine_evaluation
    from deephash.hashers import create_hasher

    X, y, splits = _synthetic(n_per=300, dim=32)
    s = _protocol_split("cifar10-50k", y, splits, seed=0, n_query=100, n_train=500)
    assert len(s.train) == 500 and (np.bincount(y[s.train]) == 50).all()
    assert set(s.train) <= set(np.flatnonzero(splits == "train")) and len(s.database) == (splits == "train").sum()
    params = {"dlbhc": {"n_iters": 60, "eval_every": 30}}
    r = run_methods_bench(X, y, splits, methods=["dlbhc", "lsh"], bits=(16,), protocol="cifar10-50k", n_query=100,
                          n_train=500, rerank_queries=40, method_params=params, json_path=tmp_path / "m.json")
    rows = {x["method"]: x for x in r["results"]}
    assert r["protocol_detail"]["n_train"] == 500 and r["rerank_queries"] == 40 and r["machine"]["isa"]
    assert "coarse_to_fine" not in rows["lsh"] and "query_accuracy" not in rows["lsh"]
    c = rows["dlbhc"]["coarse_to_fine"]
    assert c["n_query"] == 40 and 0 <= rows["dlbhc"]["query_accuracy"] <= 1
    # the same evaluation, recomputed on a hasher trained the same way on the same split
    h = create_hasher("dlbhc", 16, seed=0, **params["dlbhc"]).fit(X[s.train], y[s.train])
    q, db = X[s.query[:40]], X[s.database]
    want = coarse_to_fine_evaluation(h.encode(q), h.rerank_features(q), h.encode(db), h.rerank_features(db),
                                     y[s.query[:40]], y[s.database], k=1000)
    assert c["map_coarse_to_fine"] == pytest.approx(want["map_coarse_to_fine"])
    assert c["map_hamming"] == pytest.approx(want["map_hamming"])
    assert "Coarse-to-fine on the first 40 queries" in format_methods_markdown(r)


def test_bench_methods_command_takes_n_train_and_rerank_queries(small_cifar, tmp_path):
    from click.testing import CliRunner

    from deephash.cli.main import cli

    out = tmp_path / "m.json"
    r = CliRunner().invoke(cli, ["bench", "methods", "--dataset", str(small_cifar), "--protocol", "cifar10-50k",
                                 "--methods", "dlbhc", "--bits", "16", "--image-size", "32", "--n-train", "200",
                                 "--rerank-queries", "20", "--param", "n_iters=30", "--json", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    row = j["results"][0]
    assert j["protocol_detail"]["n_train"] == 200 and row["method"] == "dlbhc" and row["params"]["n_iters"] == 30
    assert row["coarse_to_fine"]["n_query"] == 20 and "Coarse-to-fine on the first 20 queries" in r.output
