"""Every code path of deephash's search kernel gives exactly the reference answer.

A path is an instruction set this CPU runs (plain C, scalar POPCNT, AVX2, AVX-512 VPOPCNTDQ) with a
database layout (interleaved 64-bit words, or AVX2's byte-sliced layout for codes of at most 128
bits). Each path must return the same rows and distances, ties by row, as the slow NumPy reference,
and the same distances as FAISS IndexBinaryFlat, for k-NN and radius lookups: from 8 to 1024 bits,
database sizes that are not multiples of any block (8-row groups, 32-row slices, strips, the
L2-sized blocks), n < k, and databases full of duplicate codes. ``DEEPHASH_ISA`` picks the path.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.index import SEARCHERS
from deephash.index import kernel_searcher as ks
from deephash.codes import hamming_matrix
from deephash.index.search import topk_from_distances

pytestmark = pytest.mark.skipif(not ks.kernel_available() and os.environ.get("DEEPHASH_REQUIRE_EXT") != "1",
                                reason="the C kernel is not built")

BITS = [8, 16, 24, 56, 64, 72, 120, 128, 136, 200, 256, 512, 1000, 1024]


def paths(bits: int) -> list[tuple[str, str]]:
    """(isa, layout) pairs this CPU runs for ``bits``-bit codes."""
    out = []
    for isa in ks.supported_isas():
        for layout in ks.LAYOUTS:
            if layout == "byte-sliced" and (isa != "avx2" or bits > 128):
                continue
            out.append((isa, layout))
    return out


CASES = [(bits, isa, layout) for bits in BITS for isa, layout in paths(bits)]
IDS = [f"{b}b-{i}-{lay}" for b, i, lay in CASES]


@pytest.fixture(autouse=True)
def _no_isa_env(monkeypatch):
    monkeypatch.delenv(ks.ISA_ENV, raising=False)


def kernel(bits, isa, layout, db, n_threads=1):
    s = SEARCHERS.create("deephash", n_bits=bits, isa=isa, layout=layout, n_threads=n_threads)
    assert s.isa == isa and s.layout_kind == layout and s.path == f"{isa}/{layout}"
    s.reset(db)
    return s


def database(rng, n, bits, kind):
    nb = bits // 8
    if kind == "random":
        return rng.integers(0, 256, (n, nb), dtype=np.uint8)
    if kind == "duplicates":  # every code about three times, scattered: long runs of exact ties
        base = rng.integers(0, 256, (max(1, n // 3), nb), dtype=np.uint8)
        return base[rng.integers(0, len(base), n)]
    base = rng.integers(0, 256, (4, nb), dtype=np.uint8)  # "four": four distinct codes, ties everywhere
    return base[rng.integers(0, 4, n)]


def queries(rng, db, bits):
    return np.concatenate([rng.integers(0, 256, (7, bits // 8), dtype=np.uint8), db[:3], db[-2:]])


def reference_radius(dist, r):
    out = []
    for row in dist:
        hit = np.flatnonzero(row <= r)
        o = hit[np.lexsort((hit, row[hit]))]
        out.append((row[o].astype(np.int32), o.astype(np.int64)))
    return out


@pytest.mark.parametrize("bits,isa,layout", CASES, ids=IDS)
@pytest.mark.parametrize("n,kind", [(5, "random"), (203, "duplicates"), (1003, "four"), (9_011, "duplicates")])
def test_knn_equals_numpy_and_faiss(bits, isa, layout, n, kind):
    rng = np.random.default_rng([bits, n])
    db = database(rng, n, bits, kind)
    q = queries(rng, db, bits)
    ker = kernel(bits, isa, layout, db)
    faiss_flat = SEARCHERS.create("faiss-flat", n_bits=bits)
    faiss_flat.reset(db)
    dist = hamming_matrix(q, db)
    for k in sorted({1, 10, 100, n - 1 or 1, n, n + 7}):
        D, I = ker.search(q, k)
        D0, I0 = topk_from_distances(dist, k, bits)
        assert D.dtype == np.int32 and I.dtype == np.int64 and D.shape == I.shape == (len(q), k)
        np.testing.assert_array_equal(D, D0)
        np.testing.assert_array_equal(I, I0)  # the same rows in the same order: ties by row
        Df, _ = faiss_flat.search(q, k)
        np.testing.assert_array_equal(D, Df)
    assert (I[:, n:] == -1).all() and (D[:, n:] == bits + 1).all()


@pytest.mark.parametrize("bits,isa,layout", CASES, ids=IDS)
def test_radius_equals_numpy_and_faiss(bits, isa, layout):
    import faiss

    rng = np.random.default_rng(bits + 7)
    n = 2_021
    db = database(rng, n, bits, "duplicates")
    q = queries(rng, db, bits)
    ker = kernel(bits, isa, layout, db)
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(db)
    dist = hamming_matrix(q, db)
    for r in sorted({0, 1, bits // 4, bits // 2 - 1, bits // 2, bits, bits + 3}):
        lims, D, I = ker.search_radius(q, r)
        assert lims.dtype == np.int64 and D.dtype == np.int32 and I.dtype == np.int64 and len(lims) == len(q) + 1
        lf, Df, If = flat.range_search(q, r + 1)  # FAISS's binary range search keeps d < radius
        for i, (Dr, Ir) in enumerate(reference_radius(dist, r)):
            np.testing.assert_array_equal(D[lims[i] : lims[i + 1]], Dr)
            np.testing.assert_array_equal(I[lims[i] : lims[i + 1]], Ir)
            key = np.lexsort((If[lf[i] : lf[i + 1]], Df[lf[i] : lf[i + 1]]))
            np.testing.assert_array_equal(Df[lf[i] : lf[i + 1]][key].astype(np.int32), Dr)
            np.testing.assert_array_equal(If[lf[i] : lf[i + 1]][key], Ir)


@pytest.mark.parametrize("bits,isa,layout", [c for c in CASES if c[0] in (64, 128, 256)],
                         ids=[i for c, i in zip(CASES, IDS) if c[0] in (64, 128, 256)])
def test_large_clustered_database_with_the_prior_and_two_threads(bits, isa, layout):
    """n >= 65,536 turns on the sampled prior bound and several L2 blocks; clustered codes tie a lot."""
    rng = np.random.default_rng(bits)
    n = 70_001
    centres = rng.integers(0, 256, (5, bits // 8), dtype=np.uint8)
    db = centres[rng.integers(0, 5, n)] ^ np.packbits(rng.random((n, bits)) < 0.03, axis=1)
    db[n // 2 : n // 2 + 50] = db[7]  # a run of exact duplicates mid-way
    q = np.concatenate([centres[:3], db[7:8], rng.integers(0, 256, (4, bits // 8), dtype=np.uint8)])
    dist = hamming_matrix(q, db)
    for n_threads in (1, 2):
        ker = kernel(bits, isa, layout, db, n_threads=n_threads)
        for k in (1, 100, 2_000):
            D, I = ker.search(q, k)
            D0, I0 = topk_from_distances(dist, k, bits)
            np.testing.assert_array_equal(D, D0)
            np.testing.assert_array_equal(I, I0)
        lims, D, I = ker.search_radius(q, bits // 16)
        for i, (Dr, Ir) in enumerate(reference_radius(dist, bits // 16)):
            np.testing.assert_array_equal(D[lims[i] : lims[i + 1]], Dr)
            np.testing.assert_array_equal(I[lims[i] : lims[i + 1]], Ir)


@pytest.mark.parametrize("bits,isa,layout", [c for c in CASES if c[0] in (8, 64, 72, 128, 1024)],
                         ids=[i for c, i in zip(CASES, IDS) if c[0] in (8, 64, 72, 128, 1024)])
def test_ceiling_sums_every_distance_on_every_path(bits, isa, layout):
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (1_003, bits // 8), dtype=np.uint8)
    q = rng.integers(0, 256, (9, bits // 8), dtype=np.uint8)
    ker = kernel(bits, isa, layout, db)
    want = hamming_matrix(q, db).sum(axis=1)
    np.testing.assert_array_equal(ker.ceiling(q), want)
    np.testing.assert_array_equal(ker.ceiling(q, qbatch=1), want)


def test_byte_sliced_layout_puts_byte_b_of_32_rows_together():
    codes = np.arange(40 * 3, dtype=np.uint8).reshape(40, 3)
    bsl = ks.to_byte_sliced(codes, 24).reshape(2, 3, 32)
    for row in range(40):
        for b in range(3):
            assert bsl[row // 32, b, row % 32] == codes[row, b]
    assert (bsl[1, :, 8:] == 0).all()  # padding past n


def test_deephash_isa_picks_the_path(monkeypatch):
    have = ks.supported_isas()
    db = np.zeros((10, 8), np.uint8)
    assert SEARCHERS.create("deephash", n_bits=64).isa == have[-1]  # the best this CPU runs
    monkeypatch.setenv(ks.ISA_ENV, "scalar")
    s = SEARCHERS.create("deephash", n_bits=64)
    assert s.isa == ("popcnt" if "popcnt" in have else "generic") and s.layout_kind == "interleaved"
    assert ks.kernel_isa() == s.isa
    s.reset(db)
    assert s.search(db[:1], 3)[0].tolist() == [[0, 0, 0]]
    if "avx2" in have:
        monkeypatch.setenv(ks.ISA_ENV, "AVX2")
        assert SEARCHERS.create("deephash", n_bits=128).path == "avx2/byte-sliced"
        assert SEARCHERS.create("deephash", n_bits=136).path == "avx2/interleaved"
        assert SEARCHERS.create("deephash", n_bits=64, isa="generic").isa == "generic"  # the argument wins
    monkeypatch.setenv(ks.ISA_ENV, "sse9")
    with pytest.raises(ConfigError, match=r"DEEPHASH_ISA must be one of avx512, avx2, scalar .*; got 'sse9'"):
        SEARCHERS.create("deephash", n_bits=64)
    missing = [i for i in ("avx512", "avx2") if i not in have]
    if missing:
        monkeypatch.setenv(ks.ISA_ENV, missing[0])
        with pytest.raises(ConfigError, match=f"DEEPHASH_ISA={missing[0]} asks for an instruction set this CPU cannot run"):
            SEARCHERS.create("deephash", n_bits=64)


def test_bad_layouts_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="layout must be one of interleaved, byte-sliced; got 'rows'"):
        SEARCHERS.create("deephash", n_bits=64, layout="rows")
    with pytest.raises(ConfigError, match="the byte-sliced layout needs the avx2 path and codes of at most 128 bits"):
        SEARCHERS.create("deephash", n_bits=64, isa="generic", layout="byte-sliced")
    with pytest.raises(ValueError, match="byte-sliced layout needs the avx2 path"):
        ks._hamming.knn(np.zeros(32 * 8, np.uint8), 1, 64, np.zeros((1, 1), np.uint64), 1, isa="generic")
    with pytest.raises(ValueError, match="unknown instruction set sse9"):
        ks._hamming.knn(np.zeros(8, np.uint64), 1, 64, np.zeros((1, 1), np.uint64), 1, isa="sse9")


def test_hash_index_reports_its_search_path(monkeypatch):
    from deephash.index import HashIndex

    idx = HashIndex(64)
    idx.add(np.zeros((3, 8), np.uint8))
    assert idx.search_path == f"{ks.supported_isas()[-1]}/{ks.layout_for(ks.supported_isas()[-1], 64)}"
    monkeypatch.setenv(ks.ISA_ENV, "scalar")
    idx = HashIndex(64)
    idx.add(np.zeros((3, 8), np.uint8))
    assert idx.search_path.endswith("/interleaved") and idx.search_path.split("/")[0] in ("popcnt", "generic")
    assert HashIndex(64, searcher="numpy").search_path == "numpy"
