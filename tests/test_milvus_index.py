"""MilvusIndex against a real Milvus started on 127.0.0.1 by the session fixture (no mock).

The fixture (tests/milvus_fixtures.py) starts the standalone server of the PyPI package
``milvus`` (or uses milvus-lite); without one, the server tests skip and say why.
"""
from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from deephash.errors import BackendUnavailableError, ConfigError, DataError
from deephash.index import HashIndex, hamming_matrix, pack_bits, unpack_bits
from deephash.index.milvus_index import MilvusIndex

_names = itertools.count()


def _name(tag: str) -> str:
    return f"dh_{tag}_{next(_names)}"


def _clustered(n: int, n_bits: int, n_centres: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8)
    y = rng.integers(0, n_centres, n)
    bits = centres[y] ^ (rng.random((n, n_bits)) < flip).astype(np.uint8)
    return pack_bits(bits), y


def _check_equal_up_to_ties(D: np.ndarray, I: np.ndarray, D_ref: np.ndarray, I_ref: np.ndarray,
                            dist: np.ndarray, ids: np.ndarray) -> None:
    """Distances equal; below the k-th distance the id sets equal; at it, Milvus's ids are true ties."""
    np.testing.assert_array_equal(D, D_ref)
    pos = {int(i): r for r, i in enumerate(ids)}
    for qi in range(len(D)):
        kth = D_ref[qi, -1]
        inside = D_ref[qi] < kth
        assert set(I[qi][inside].tolist()) == set(I_ref[qi][inside].tolist())
        for i in I[qi][~inside]:
            assert dist[qi, pos[int(i)]] == kth
        assert len(set(I[qi].tolist())) == I.shape[1]  # no id twice


# ---------------------------------------------------------------- no server needed
def test_config_errors_say_what_was_expected():
    with pytest.raises(ConfigError, match="index_type must be one of BIN_FLAT, BIN_IVF_FLAT; got 'HNSW'"):
        MilvusIndex("http://127.0.0.1:1", "c", 64, index_type="HNSW")
    with pytest.raises(ConfigError, match="n_bits must be a multiple of 8"):
        MilvusIndex("http://127.0.0.1:1", "c", 12)
    with pytest.raises(ConfigError, match="nprobe must be an integer between 1 and 65536; got 0"):
        MilvusIndex("http://127.0.0.1:1", "c", 64, nprobe=0)
    with pytest.raises(ConfigError, match="collection must be letters"):
        MilvusIndex("http://127.0.0.1:1", "my-codes", 64)


def test_missing_pymilvus_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # makes `import pymilvus` raise ImportError
    idx = MilvusIndex("http://127.0.0.1:1", "c", 64)
    with pytest.raises(BackendUnavailableError, match=r"needs pymilvus, which is not installed: pip install .deephash\[milvus\].$"):
        len(idx)


def test_unreachable_server_is_a_clear_error():
    pytest.importorskip("pymilvus")
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    idx = MilvusIndex(f"http://127.0.0.1:{port}", "c", 64, timeout=2)
    with pytest.raises(BackendUnavailableError, match=rf"cannot connect to the Milvus server at 'http://127.0.0.1:{port}' within 2 s"):
        len(idx)


# ---------------------------------------------------------------- against the server
def test_bin_flat_equals_exact_search(milvus_server):
    rng = np.random.default_rng(1)
    n, n_bits = 3000, 64
    codes = rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8)
    local = HashIndex(n_bits, searcher="numpy")
    local.add(codes, ids=np.arange(n) * 3 + 7, labels=rng.integers(0, 10, n), paths=[f"img/{i}.jpg" for i in range(n)])
    remote = MilvusIndex.from_hash_index(local, milvus_server.uri, _name("flat"))
    try:
        assert len(remote) == n
        queries = np.concatenate([codes[:20] ^ np.uint8(0x11), rng.integers(0, 256, (20, n_bits // 8), dtype=np.uint8)])
        for k in (1, 10, 100):
            D, I = remote.search(queries, k)
            D_ref, I_ref = local.search(queries, k)
            assert D.dtype == np.int32 and I.dtype == np.int64 and D.shape == I.shape == (len(queries), k)
            _check_equal_up_to_ties(D, I, D_ref, I_ref, hamming_matrix(queries, codes), local.ids)
        got = remote.fetch([7, 10, 3 * 2999 + 7])
        assert [g["path"] for g in got] == ["img/0.jpg", "img/1.jpg", "img/2999.jpg"]
        assert [g["label"] for g in got] == [int(local.labels[0]), int(local.labels[1]), int(local.labels[2999])]
    finally:
        remote.drop()


def test_bit_order_is_numpy_packbits(milvus_server):
    """Milvus reads the packed bytes as deephash writes them: every distance equals hamming_matrix's.

    One-hot queries make it bit-exact: d(e_j, x) = popcount(x) + 1 - 2 * x_j with x_j the j-th
    bit as numpy.unpackbits (most significant first) reads it.
    """
    rng = np.random.default_rng(2)
    n_bits = 128
    codes = rng.integers(0, 256, (64, n_bits // 8), dtype=np.uint8)
    remote = MilvusIndex(milvus_server.uri, _name("bits"), n_bits, metadata=False)
    try:
        remote.add(codes)
        onehot = pack_bits(np.eye(n_bits, dtype=np.uint8))
        D, I = remote.search(onehot, len(codes))
        order = np.argsort(I, axis=1)
        D_by_id = np.take_along_axis(D, order, axis=1)  # (n_bits, n) distances, columns in id order
        np.testing.assert_array_equal(D_by_id, hamming_matrix(onehot, codes))
        x = unpack_bits(codes).astype(np.int32)
        np.testing.assert_array_equal(D_by_id, (x.sum(1)[None, :] + 1 - 2 * x.T))
    finally:
        remote.drop()


def test_add_search_remove_and_reopen(milvus_server):
    rng = np.random.default_rng(3)
    name = _name("crud")
    a = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    idx = MilvusIndex(milvus_server.uri, name, 64)
    try:
        assert len(idx) == 0
        y = rng.integers(0, 5, 500)
        multi = np.eye(5, dtype=np.uint8)[y]
        multi[:, 4] = 1  # multi-hot: every image is also in class 4
        ids_a = idx.add(a, labels=multi)
        np.testing.assert_array_equal(ids_a, np.arange(500))
        assert idx.fetch([3])[0] == {"id": 3, "path": "", "label": sorted({int(y[3]), 4})}
        # a second client on the same collection continues the ids from the largest stored one
        other = MilvusIndex(milvus_server.uri, name, 64)
        ids_b = other.add(b, paths=[f"b{i}" for i in range(300)])
        np.testing.assert_array_equal(ids_b, np.arange(500, 800))
        assert len(idx) == 800
        D, I = idx.search(b[:5], 1)
        np.testing.assert_array_equal(D[:, 0], 0)
        np.testing.assert_array_equal(I[:, 0], ids_b[:5])

        assert idx.remove(ids_b[:5]) == 5
        assert len(idx) == 795
        D, I = idx.search(b[:5], 3)
        assert not np.isin(I, ids_b[:5]).any()
        with pytest.raises(DataError, match=r"unknown image id\(s\) \[500\]"):
            idx.remove([1, 500])  # 500 was removed above
        assert len(idx) == 795
        assert idx.fetch([600])[0]["path"] == "b100"
    finally:
        idx.drop()


def test_remove_unknown_and_duplicate_ids_raise(milvus_server):
    rng = np.random.default_rng(4)
    idx = MilvusIndex(milvus_server.uri, _name("errs"), 64, metadata=False)
    try:
        idx.add(rng.integers(0, 256, (10, 8), dtype=np.uint8), ids=np.arange(100, 110))
        with pytest.raises(DataError, match=r"unknown image id\(s\) \[5, 6\]"):
            idx.remove([5, 100, 6])
        assert len(idx) == 10  # nothing removed when any id is unknown
        with pytest.raises(ConfigError, match="ids must be unique and not already in the index; 1 are, e.g. \\[105\\]"):
            idx.add(rng.integers(0, 256, (2, 8), dtype=np.uint8), ids=[105, 200])
        with pytest.raises(ConfigError, match="stores no paths or labels"):
            idx.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), paths=["x"])
        with pytest.raises(ConfigError, match="codes have 128 bits per row; the index holds 64-bit codes"):
            idx.search(np.zeros((1, 16), np.uint8), 1)
        with pytest.raises(ConfigError, match="k must be an integer between 1 and 16384"):
            idx.search(np.zeros((1, 8), np.uint8), 0)
        with pytest.raises(ConfigError, match="holds 64-bit codes; this index was asked for 128-bit codes"):
            len(MilvusIndex(milvus_server.uri, idx.collection, 128))
    finally:
        idx.drop()


def test_search_pads_when_fewer_than_k(milvus_server):
    idx = MilvusIndex(milvus_server.uri, _name("pad"), 32, metadata=False)
    try:
        idx.add(np.array([[0, 0, 0, 0], [255, 0, 0, 0], [255, 255, 255, 255]], np.uint8), ids=[10, 11, 12])
        D, I = idx.search(np.zeros((2, 4), np.uint8), 5)
        np.testing.assert_array_equal(I, [[10, 11, 12, -1, -1]] * 2)
        np.testing.assert_array_equal(D, [[0, 8, 32, 33, 33]] * 2)
    finally:
        idx.drop()


def test_bin_ivf_flat_recall_on_clustered_codes(milvus_server):
    if not milvus_server.supports_ivf:
        pytest.skip(f"{milvus_server.kind} Milvus accepts only BIN_FLAT (milvus-lite 2.5 has no BIN_IVF_FLAT)")
    n, n_bits, k = 4000, 64, 10
    codes, _ = _clustered(n, n_bits, n_centres=40, flip=0.05, seed=5)
    queries, _ = _clustered(100, n_bits, n_centres=40, flip=0.05, seed=5)  # same centres (same seed), new noise
    queries = queries[::-1].copy()
    exact = hamming_matrix(queries, codes)
    idx = MilvusIndex(milvus_server.uri, _name("ivf"), n_bits, index_type="BIN_IVF_FLAT", nlist=32, nprobe=4,
                      metadata=False)
    try:
        idx.add(codes)
        idx.flush()  # seal the segment so the server builds the IVF index on it
        D_ref = np.sort(exact, axis=1)[:, :k]
        recalls = {}
        for nprobe in (1, 4, 32):
            D, I = idx.search(queries, k, nprobe=nprobe)
            np.testing.assert_array_equal(D, np.take_along_axis(exact, I, axis=1))  # true distances of what came
            # recall@k counted with ties: a hit is any returned code within the true k-th distance
            recalls[nprobe] = float((D <= D_ref[:, -1:]).mean())
        assert recalls[32] == 1.0  # nprobe == nlist scans every list: exact
        assert recalls[4] >= 0.9, recalls
        assert recalls[1] <= recalls[4] <= recalls[32]
        # a client asking for another index type is told so, and can switch the collection over
        flat = MilvusIndex(milvus_server.uri, idx.collection, n_bits, metadata=False)
        with pytest.raises(ConfigError, match="is indexed with BIN_IVF_FLAT; pass index_type='BIN_IVF_FLAT' or call set_index"):
            len(flat)
        flat.set_index("BIN_FLAT")
        D, I = flat.search(queries, k)
        np.testing.assert_array_equal(D, D_ref)
    finally:
        idx.drop()
