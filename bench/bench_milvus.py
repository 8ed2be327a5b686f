"""Bounded benchmark of MilvusIndex: insert time, QPS and recall@k vs exact search, BIN_FLAT and BIN_IVF_FLAT.

Codes: ``--n`` codes of ``--bits`` bits drawn around ``--centres`` random class centres with each
bit flipped with probability ``--flip`` (deep-hash codes of one class sit close together);
queries are drawn the same way (held out). The exact answer is FAISS ``IndexBinaryFlat``
(one thread, also timed: it gives the per-core brute-force scan rate used in docs/scale-out.md).

Recall@k counts ties: a returned code is a hit when its true distance is within the true k-th
distance (with clustered codes thousands of codes tie at the k-th place, so id overlap would
measure the tie order, not the search); ``id_recall`` is the plain overlap, for reference.

    python bench/bench_milvus.py --n 1000000 --out out/bench_milvus.json
    python bench/bench_milvus.py --uri http://host:19530 ...   # an existing server or cluster

Without ``--uri`` it starts a local standalone server (``DEEPHASH_MILVUS_PYTHON`` or this Python's
``milvus`` package) with its data in a temp folder, and stops it after. Bounded: ``--max-seconds``
per search setting, ``--queries`` queries.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deephash.codes import pack_bits
from deephash.index.milvus_index import MilvusIndex
from deephash.utils import atomic_write_json


def clustered_codes(n: int, n_bits: int, n_centres: int, flip: float, rng: np.random.Generator,
                    centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    if centres is None:
        centres = rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8)
    out = np.empty((n, n_bits // 8), np.uint8)
    for s in range(0, n, 100_000):  # bounded memory for the bit matrix
        m = min(n, s + 100_000) - s
        y = rng.integers(0, len(centres), m)
        bits = centres[y] ^ (rng.random((m, n_bits)) < flip).astype(np.uint8)
        out[s : s + m] = pack_bits(bits)
    return out, centres


def exact(db: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexBinaryFlat(db.shape[1] * 8)
    index.add(db)
    t = time.perf_counter()
    D, I = index.search(q, k)
    return D.astype(np.int32), I.astype(np.int64), time.perf_counter() - t


def recall(D: np.ndarray, I: np.ndarray, D_ref: np.ndarray, I_ref: np.ndarray) -> tuple[float, float]:
    kth = D_ref[:, -1:]
    tie_aware = float(((D <= kth) & (I >= 0)).sum() / I_ref.size)
    overlap = float(np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(I, I_ref)]))
    return tie_aware, overlap


def _server_children(srv) -> list[int]:
    """Pids of the local server launcher's children (the milvus process); raises OSError if gone."""
    kids = []
    for tid in os.listdir(f"/proc/{srv.proc.pid}/task"):
        with open(f"/proc/{srv.proc.pid}/task/{tid}/children") as fh:
            kids += [int(x) for x in fh.read().split()]
    return kids


def _server_rss_mb(srv) -> float | None:
    """Resident memory of the local server's milvus process (a child of the launcher), in MB."""
    if srv is None:
        return None
    try:
        kids = _server_children(srv)
        total = 0.0
        for pid in kids:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        return round(total, 1)
    except OSError:
        return None


def querynode_entity_bytes(srv) -> dict | None:
    """The query node's own accounting of loaded rows: ``milvus_querynode_entity_size`` / ``_entity_num``
    (sealed segments) from the local server's ``/metrics``; None for a remote server."""
    if srv is None:
        return None
    import re
    import urllib.request

    try:
        kids = _server_children(srv)
        with open(f"/proc/{kids[0]}/environ", "rb") as fh:
            env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        port = int(env[b"METRICS_PORT"])
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except (OSError, IndexError, KeyError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    size = num = 0.0
    for line in text.splitlines():
        if 'segment_state="Sealed"' not in line:
            continue
        m = re.match(r"milvus_querynode_entity_(size|num)\{.*\}\s+(\S+)$", line)
        if m:
            if m.group(1) == "size":
                size += float(m.group(2))
            else:
                num += float(m.group(2))
    return {"sealed_rows": int(num), "sealed_bytes": int(size), "bytes_per_row": round(size / num, 1) if num else None}


def timed_search(idx: MilvusIndex, q: np.ndarray, k: int, batch: int, max_seconds: float,
                 **kw) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Search ``q`` in batches of ``batch``; stops early after ``max_seconds`` (returns how many were done)."""
    Ds, Is = [], []
    t = time.perf_counter()
    done = 0
    lat = []
    for s in range(0, len(q), batch):
        t1 = time.perf_counter()
        D, I = idx.search(q[s : s + batch], k, **kw)
        lat.append(time.perf_counter() - t1)
        Ds.append(D)
        Is.append(I)
        done += len(D)
        if time.perf_counter() - t > max_seconds:
            break
    return np.concatenate(Ds), np.concatenate(Is), time.perf_counter() - t, done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--centres", type=int, default=100)
    ap.add_argument("--flip", type=float, default=0.05)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100, help="queries per request for the throughput runs")
    ap.add_argument("--single", type=int, default=200, help="one-query requests timed for latency")
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=str, default="1,4,16,64")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="cap on each search setting's timed run")
    ap.add_argument("--indexes", default="BIN_FLAT,BIN_IVF_FLAT", help="which to run (BIN_FLAT always holds the load)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--uri", default="", help="an existing Milvus; default: start a local standalone server")
    ap.add_argument("--token", default="")
    ap.add_argument("--out", default="out/bench_milvus.json")
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    t = time.perf_counter()
    db, centres = clustered_codes(a.n, a.bits, a.centres, a.flip, rng)
    q, _ = clustered_codes(a.queries, a.bits, a.centres, a.flip, rng, centres)
    gen_s = time.perf_counter() - t
    D_ref, I_ref, exact_s = exact(db, q, a.k)
    report: dict = {
        "config": {k: v for k, v in vars(a).items() if k != "token"},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version(), "platform": platform.platform()},
        "generate_s": round(gen_s, 2),
        "faiss_flat_1thread": {"seconds": round(exact_s, 3), "qps": round(a.queries / exact_s, 1),
                               "codes_scanned_per_s_per_core": round(a.n * a.queries / exact_s)},
        "runs": [],
    }
    print(f"{a.n:,} codes x {a.bits} bits around {a.centres} centres (flip {a.flip}), {a.queries} queries, k={a.k}, seed {a.seed}")
    print(f"FAISS IndexBinaryFlat, 1 thread: {a.queries / exact_s:,.0f} q/s = "
          f"{a.n * a.queries / exact_s / 1e9:.2f} G codes scanned/s/core")

    srv = None
    uri = a.uri
    tmp = None
    if not uri:
        from deephash.index.milvus_server import start_local_milvus

        tmp = tempfile.TemporaryDirectory(prefix="deephash-milvus-bench-")
        t = time.perf_counter()
        srv = start_local_milvus(Path(tmp.name) / "data")
        uri = srv.uri
        report["server_start_s"] = round(time.perf_counter() - t, 1)
    try:
        name = f"dh_bench_{a.bits}_{a.n}"
        idx = MilvusIndex(uri, name, a.bits, token=a.token, metadata=False, index_type="BIN_FLAT", nlist=a.nlist)
        if len(idx):
            idx.drop()
            idx = MilvusIndex(uri, name, a.bits, token=a.token, metadata=False, index_type="BIN_FLAT", nlist=a.nlist)
        rss0 = _server_rss_mb(srv)
        t = time.perf_counter()
        idx.add(db, ids=np.arange(a.n))
        ins = time.perf_counter() - t
        t = time.perf_counter()
        idx.flush()
        fl = time.perf_counter() - t
        report["insert_s"] = round(ins, 2)
        report["insert_rows_per_s"] = round(a.n / ins)
        report["flush_s"] = round(fl, 2)
        report["count"] = len(idx)
        time.sleep(5)
        rss1 = _server_rss_mb(srv)
        report["server_rss_mb"] = {"empty_collection": rss0, "bin_flat_loaded": rss1}
        report["querynode_memory"] = {"BIN_FLAT": querynode_entity_bytes(srv)}
        print(f"insert {ins:.1f} s ({a.n / ins:,.0f} rows/s), flush {fl:.1f} s, count {report['count']:,}")

        def run(label: str, build_s: float | None, **kw) -> None:
            D, I, sec, done = timed_search(idx, q, a.k, a.batch, a.max_seconds, **kw)
            r_tie, r_ids = recall(D, I, D_ref[:done], I_ref[:done])
            _, _, sec1, done1 = timed_search(idx, q[: a.single], a.k, 1, a.max_seconds / 2, **kw)
            row = {"index": label, **kw, "build_s": build_s, "queries": done, "qps_batched": round(done / sec, 1),
                   "batch": a.batch, "latency_ms_single": round(1000 * sec1 / done1, 2), "single_queries": done1,
                   f"recall@{a.k}": round(r_tie, 4), f"id_recall@{a.k}": round(r_ids, 4)}
            report["runs"].append(row)
            print(f"{label:<24} {row['qps_batched']:>9,.0f} {row['latency_ms_single']:>10.1f} "
                  f"{r_tie:>10.4f} {r_ids:>10.4f}", flush=True)

        print(f"{'index':<24} {'q/s (x' + str(a.batch) + ')':>9} {'1-query ms':>10} {'recall@' + str(a.k):>10} {'id-recall':>10}")
        if "BIN_FLAT" in a.indexes.split(","):
            run("BIN_FLAT", None)
        if "BIN_IVF_FLAT" in a.indexes.split(","):
            t = time.perf_counter()
            idx.set_index("BIN_IVF_FLAT", nlist=a.nlist)
            build = round(time.perf_counter() - t, 2)
            report["ivf_build_s"] = build
            time.sleep(5)
            report["server_rss_mb"]["bin_ivf_flat_loaded"] = _server_rss_mb(srv)
            report["querynode_memory"]["BIN_IVF_FLAT"] = querynode_entity_bytes(srv)
            for nprobe in [int(x) for x in a.nprobe.split(",") if x]:
                run(f"BIN_IVF_FLAT nprobe={nprobe}", build, nprobe=nprobe)
        print(f"query node, sealed rows: {report['querynode_memory']}")
        print(f"server RSS (MB): {report['server_rss_mb']}")
        idx.drop()
    finally:
        if srv is not None:
            srv.stop()
        if tmp is not None:
            tmp.cleanup()
    report["loadavg_at_end"] = [round(x, 1) for x in os.getloadavg()]
    atomic_write_json(a.out, report)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
