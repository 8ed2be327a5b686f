"""deephash's C Hamming kernel (``deephash.index._hamming``) against the NumPy reference and FAISS.

Every instruction-set path the CPU supports (plain C, POPCNT, AVX2, AVX-512) must give exactly
the reference answer: the same distances and the same rows, ties by row, padded past n.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.index import SEARCHERS, HashIndex
from deephash.index import kernel_searcher as ks
from deephash.codes import hamming_matrix

pytestmark = pytest.mark.skipif(not ks.kernel_available() and os.environ.get("DEEPHASH_REQUIRE_EXT") != "1",
                                reason="the C kernel is not built")

BITS = [8, 16, 64, 72, 128, 256]


def test_extension_is_built_when_required():
    """CI sets DEEPHASH_REQUIRE_EXT=1: a missing or broken build must fail there, not fall back quietly."""
    if os.environ.get("DEEPHASH_REQUIRE_EXT") == "1":
        assert ks.kernel_available(), f"deephash.index._hamming did not import: {ks._IMPORT_ERROR}"
    if ks.kernel_available():
        assert ks.kernel_isa() in ks._hamming.supported_isas()


def isas():
    return ks._hamming.supported_isas() if ks.kernel_available() else []


@pytest.fixture(params=["generic", "popcnt", "avx2", "avx512"])
def isa(request, monkeypatch):
    monkeypatch.delenv(ks.ISA_ENV, raising=False)  # searchers follow set_isa, not the caller's DEEPHASH_ISA
    if request.param not in isas():
        pytest.skip(f"{request.param} is not supported on this CPU")
    ks._hamming.set_isa(request.param)
    yield request.param
    ks._hamming.set_isa(None)


def make_codes(rng, n, bits, tied):
    if tied:  # few distinct codes: most distances tie, so the order inside ties is what is tested
        base = rng.integers(0, 256, (4, bits // 8), dtype=np.uint8)
        return base[rng.integers(0, 4, n)]
    return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)


def searchers(bits, db):
    ref = SEARCHERS.create("numpy", n_bits=bits)
    ref.reset(db)
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    return ref, ker


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("tied", [False, True])
def test_knn_equals_reference(isa, bits, tied):
    rng = np.random.default_rng(bits * 2 + tied)
    n = 203  # not a multiple of 8: the last group is partial
    db = make_codes(rng, n, bits, tied)
    q = np.concatenate([make_codes(rng, 9, bits, tied), db[:2]])  # includes exact matches
    ref, ker = searchers(bits, db)
    for k in (1, 7, 100, n, n + 5):
        D, I = ker.search(q, k)
        D0, I0 = ref.search(q, k)
        assert D.dtype == np.int32 and I.dtype == np.int64 and D.shape == (len(q), k)
        np.testing.assert_array_equal(D, D0)
        np.testing.assert_array_equal(I, I0)
    D, I = ker.search(q, n + 5)
    assert (I[:, n:] == -1).all() and (D[:, n:] == bits + 1).all()


@pytest.mark.parametrize("bits", [64, 128])
def test_knn_large_database_uses_the_prior_and_stays_exact(bits):
    """n >= 65,536 turns on the sampled prior bound; ties in clustered codes must still come out by row."""
    rng = np.random.default_rng(1)
    n = 70_001
    centres = rng.integers(0, 256, (5, bits // 8), dtype=np.uint8)
    db = centres[rng.integers(0, 5, n)]
    flips = rng.random((n, bits)) < 0.03
    db = db ^ np.packbits(flips, axis=1)
    q = np.concatenate([centres[:3], rng.integers(0, 256, (3, bits // 8), dtype=np.uint8)])
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    from deephash.index.search import topk_from_distances

    dist = hamming_matrix(q, db)
    for k in (1, 100, 2000):
        D, I = ker.search(q, k)
        D0, I0 = topk_from_distances(dist, k, bits)
        np.testing.assert_array_equal(D, D0)
        np.testing.assert_array_equal(I, I0)


def test_prior_that_proves_too_tight_falls_back_to_a_full_scan():
    """Near neighbours only inside the sampled strips: the prior admits too few rows, the re-scan fixes it."""
    bits, n, k = 64, 70_000, 300
    rng = np.random.default_rng(2)
    db = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    q = np.zeros((1, 8), np.uint8)
    ngroups = (n + 7) // 8
    stride = ngroups // 64
    for j in range(64):  # two exact matches at the start of every sampled strip
        db[j * stride * 8 : j * stride * 8 + 2] = 0
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    from deephash.index.search import topk_from_distances

    D0, I0 = topk_from_distances(hamming_matrix(q, db), k, bits)
    for prior in (True, False):
        D, I = ks._hamming.knn(ker._layout, n, bits, ks.to_words(q, bits), k, prior=prior)
        np.testing.assert_array_equal(D, D0)
        np.testing.assert_array_equal(I, I0)


def test_empty_database_and_no_queries():
    ker = SEARCHERS.create("deephash", n_bits=64)
    q = np.zeros((3, 8), np.uint8)
    D, I = ker.search(q, 4)
    assert (I == -1).all() and (D == 65).all() and D.shape == (3, 4)
    ker.reset(np.zeros((5, 8), np.uint8))
    D, I = ker.search(np.zeros((0, 8), np.uint8), 4)
    assert D.shape == (0, 4) and I.shape == (0, 4)
    lims, D, I = ker.search_radius(q, 3)
    assert list(lims) == [0, 5, 10, 15]


def test_bad_arguments_raise_with_the_expected_value():
    ker = SEARCHERS.create("deephash", n_bits=64)
    with pytest.raises(ConfigError, match="k must be a positive integer; got 0"):
        ker.search(np.zeros((1, 8), np.uint8), 0)
    with pytest.raises(ConfigError, match="the index holds 64-bit codes"):
        ker.search(np.zeros((1, 16), np.uint8), 1)
    with pytest.raises(ConfigError, match="radius must be a non-negative integer; got -1"):
        ker.search_radius(np.zeros((1, 8), np.uint8), -1)
    with pytest.raises(ConfigError, match="n_threads must be a positive integer; got 0"):
        SEARCHERS.create("deephash", n_bits=64, n_threads=0)
    with pytest.raises(ValueError, match="unknown instruction set"):
        ks._hamming.set_isa("sse9")


@pytest.mark.parametrize("bits", BITS)
def test_radius_is_exact(isa, bits):
    rng = np.random.default_rng(bits)
    db = make_codes(rng, 301, bits, tied=bits <= 16)
    q = np.concatenate([db[:3], make_codes(rng, 4, bits, False)])
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    dist = hamming_matrix(q, db)
    for r in (0, 1, 2, bits // 3, bits // 2, bits, bits + 10):
        lims, D, I = ker.search_radius(q, r)
        assert lims[0] == 0 and len(lims) == len(q) + 1
        for i, row in enumerate(dist):
            hit = np.flatnonzero(row <= r)
            o = hit[np.lexsort((hit, row[hit]))]
            np.testing.assert_array_equal(I[lims[i] : lims[i + 1]], o)
            np.testing.assert_array_equal(D[lims[i] : lims[i + 1]], row[o])


def test_hash_index_search_radius_uses_the_kernel_and_matches_numpy():
    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, (500, 4), dtype=np.uint8)
    idx = HashIndex(32)
    assert idx.searcher_name == "deephash"
    idx.add(db, ids=np.arange(1000, 1500))
    slow = HashIndex(32, searcher="numpy")
    slow.add(db, ids=np.arange(1000, 1500))
    q = np.concatenate([db[:2], rng.integers(0, 256, (2, 4), dtype=np.uint8)])
    for (d1, i1), (d2, i2) in zip(idx.search_radius(q, 9), slow.search_radius(q, 9)):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(i1, i2)
    D, I = idx.search(q, 10)
    D2, I2 = slow.search(q, 10)
    np.testing.assert_array_equal(D, D2)
    np.testing.assert_array_equal(I, I2)


@pytest.mark.parametrize("bits", [64, 128, 256])
def test_distances_equal_faiss(bits):
    """FAISS is the reference answer: same distances (which rows win a tie at the k-th place is FAISS's choice)."""
    rng = np.random.default_rng(bits + 1)
    db = rng.integers(0, 256, (2000, bits // 8), dtype=np.uint8)
    q = rng.integers(0, 256, (20, bits // 8), dtype=np.uint8)
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    fs = SEARCHERS.create("faiss-flat", n_bits=bits)
    fs.reset(db)
    D, I = ker.search(q, 50)
    Df, If = fs.search(q, 50)
    np.testing.assert_array_equal(D, Df)
    dist = hamming_matrix(q, db)
    np.testing.assert_array_equal(np.take_along_axis(dist, I, axis=1), D)


def test_threads_give_the_same_answer():
    rng = np.random.default_rng(7)
    db = rng.integers(0, 256, (3001, 16), dtype=np.uint8)
    q = rng.integers(0, 256, (37, 16), dtype=np.uint8)
    one = SEARCHERS.create("deephash", n_bits=128)
    one.reset(db)
    two = SEARCHERS.create("deephash", n_bits=128, n_threads=2)
    two.reset(db)
    for a, b in zip(one.search(q, 33), two.search(q, 33)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one.search_radius(q, 50), two.search_radius(q, 50)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bits", [64, 72, 128])
def test_ceiling_sums_every_distance(isa, bits):
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (1003, bits // 8), dtype=np.uint8)
    q = rng.integers(0, 256, (9, bits // 8), dtype=np.uint8)
    ker = SEARCHERS.create("deephash", n_bits=bits)
    ker.reset(db)
    want = hamming_matrix(q, db).sum(axis=1)
    np.testing.assert_array_equal(ker.ceiling(q), want)
    np.testing.assert_array_equal(ker.ceiling(q, qbatch=1), want)


def test_missing_extension_falls_back_to_faiss_with_one_warning(monkeypatch):
    monkeypatch.setattr(ks, "_hamming", None)
    monkeypatch.setattr(ks, "_IMPORT_ERROR", "simulated")
    monkeypatch.setattr(ks, "_warned", False)
    with pytest.warns(RuntimeWarning, match="falls back to FAISS"):
        assert ks.default_searcher_name() == "faiss-flat"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once only
        s = SEARCHERS.create("deephash", n_bits=64)
    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, (100, 8), dtype=np.uint8)
    s.reset(db)
    D, I = s.search(db[:3], 5)
    np.testing.assert_array_equal(D[:, 0], 0)
    idx = HashIndex(64)
    assert idx.searcher_name == "faiss-flat"
    lims, D, I = s.search_radius(db[:2], 0)
    assert list(I[lims[0] : lims[1]]) == [0]
