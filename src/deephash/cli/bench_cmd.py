"""``deephash bench ...``: benchmarks that print a Markdown table and write JSON."""
from __future__ import annotations

import os

import click

from deephash.cli.finetune_cmd import recipe_options


@click.group()
def bench() -> None:
    """Benchmarks: each prints a Markdown table with the machine it ran on (CPU, instruction set,
    load) and writes JSON with --json; committed results live in docs/results/<what-it-measured>/."""


def _int_list(value: str, option: str) -> list[int]:
    from deephash.errors import ConfigError

    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers; got {value!r}") from None


@bench.command("search", short_help="Search q/s per ISA vs its ceiling and FAISS; sub-linear.")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="database codes")
@click.option("--bits", default="64,128", show_default=True, help="comma-separated code lengths")
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--queries", "n_queries", type=int, default=1000, show_default=True)
@click.option("--threads", default="1,2", show_default=True, help="comma-separated thread counts")
@click.option("--isa", "isas", default=None,
              help="comma-separated instruction sets to measure (avx512, avx2, scalar); default: every vector ISA the CPU has")
@click.option("--random", "random_codes", is_flag=True, help="uniformly random codes instead of class-clustered ones")
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--sublinear", default="ivf,hnsw,mih,radius", show_default=True,
              help="comma-separated sub-linear indexes to measure ('' for none)")
@click.option("--radius", type=int, default=2, show_default=True, help="Hamming radius of the 'radius' sub-linear row")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_search(n, bits, k, n_queries, threads, isas, random_codes, repeats, sublinear, radius, seed, json_path):
    """Exact search q/s per instruction set against its popcount ceiling and FAISS IndexBinaryFlat; sub-linear recall."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.search_bench import run_search_bench

    subs = [s for s in sublinear.split(",") if s] or None
    run_search_bench(n, _int_list(bits, "--bits"), k, n_queries, _int_list(threads, "--threads"), not random_codes,
                     json_path, isas=[i for i in isas.split(",") if i] if isas else None, repeats=repeats, seed=seed,
                     sublinear=subs, radius=radius)


@bench.command("startup", short_help="CLI start-up time in fresh processes vs bare python.")
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_startup(repeats, json_path):
    """CLI start-up: --help, an argument error and `methods` in fresh processes, against bare python and import torch."""
    import tempfile
    from pathlib import Path

    from deephash.bench.startup_bench import run_startup_bench

    with tempfile.TemporaryDirectory() as tmp:
        run_startup_bench(Path(tmp), repeats=repeats, json_path=json_path, say=click.echo)


@bench.command("query-latency", short_help="One query image end to end, per stage, via the jobs API.")
@click.argument("index_path", type=click.Path())
@click.option("--queries", multiple=True, type=click.Path(), help="query images or folders (default: images of the indexed archive)")
@click.option("--images", "n_images", type=int, default=100, show_default=True, help="queries timed (after one warm-up)")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_query_latency(index_path, queries, n_images, k, json_path):
    """One query image end to end (decode, backbone, hash, search, re-rank) through the jobs API."""
    from deephash.bench.query_latency_bench import run_query_latency_bench

    run_query_latency_bench(index_path, queries=queries, n_images=n_images, k=k, json_path=json_path, say=click.echo)


@bench.command("scale", short_help="Local index vs FAISS vs Milvus: insert, memory, q/s, recall.")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="database codes (10^7 took 13.5 min on a loaded 2-core machine)")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--queries", "n_queries", type=int, default=200, show_default=True)
@click.option("--centres", type=int, default=100, show_default=True, help="class centres the codes are drawn around")
@click.option("--flip", type=float, default=0.05, show_default=True, help="probability of each bit flipped from its centre (0.5: random codes)")
@click.option("--batch", type=int, default=0, show_default=True, help="queries per request for queries/s (0: all in one)")
@click.option("--single", type=int, default=0, show_default=True, help="one-query requests timed per index for latency (0: none)")
@click.option("--milvus", "milvus_uri", default=None, help="milvus://HOST:PORT/COLLECTION to measure Milvus too (the collection is dropped)")
@click.option("--milvus-index", "milvus_kinds", default="flat,ivf", show_default=True, help="Milvus indexes to measure: flat (BIN_FLAT), ivf (BIN_IVF_FLAT)")
@click.option("--metrics-url", default=None, help="the Milvus server's /metrics, for its query-node and process memory")
@click.option("--nlist", type=int, default=1024, show_default=True, help="IVF lists (FAISS and Milvus)")
@click.option("--nprobe", default="1,4,16", show_default=True, help="IVF nprobe sweep (FAISS and Milvus)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_scale(n, bits, k, n_queries, centres, flip, batch, single, milvus_uri, milvus_kinds, metrics_url, nlist, nprobe,
                seed, json_path):
    """(a) the local exact index vs FAISS IndexBinaryFlat and IVF vs Milvus BIN_FLAT / BIN_IVF_FLAT on
    class-clustered codes: insert, memory, queries/s, one-query latency, recall@k with ties."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.scale_bench import run_scale_bench

    run_scale_bench(n, bits=bits, k=k, n_queries=n_queries, milvus_uri=milvus_uri, metrics_url=metrics_url,
                    nprobes=_int_list(nprobe, "--nprobe"), nlist=nlist, centres=centres, flip=flip, batch=batch,
                    single=single, milvus_kinds=[m for m in milvus_kinds.split(",") if m], seed=seed,
                    json_path=json_path, say=click.echo)


@bench.command("faiss-upkeep", short_help="FAISS structures in an index file: build, load, upkeep.")
@click.option("--n", type=int, default=100_000, show_default=True, help="database codes")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--structures", default="ivf,hnsw,mih", show_default=True, help="comma-separated FAISS structures")
@click.option("--changes", type=int, default=1000, show_default=True, help="codes added, then ids removed")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--queries", "n_queries", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_faiss_upkeep(n, bits, structures, changes, k, n_queries, seed, json_path):
    """FAISS structures inside an index file (faiss-ivf:FILE, ...): build vs load, add, remove vs rebuild, q/s, recall."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.faiss_upkeep_bench import run_faiss_upkeep_bench

    run_faiss_upkeep_bench(n, bits=bits, structures=[s for s in structures.split(",") if s], changes=changes, k=k,
                           n_queries=n_queries, seed=seed, json_path=json_path, say=click.echo)


@bench.command("replicas", short_help="Serve replicas on one Milvus vs a local file, bounded load.")
@click.option("--milvus", "milvus_uri", required=True, help="milvus://HOST:PORT/COLLECTION for the replicas (created, dropped after)")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10' or the path of an archive")
@click.option("--n", "n_images", type=int, default=10_000, show_default=True, help="images indexed (evenly spaced over the archive)")
@click.option("--model", type=click.Path(), default=None, help="checkpoint (default: ITQ-64 fitted on 1,000 of the images)")
@click.option("--image-size", type=int, default=128, show_default=True, help="backbone input size of the default model")
@click.option("--requests", type=int, default=300, show_default=True, help="requests per row (a bounded load)")
@click.option("--concurrency", type=int, default=4, show_default=True, help="client threads, split evenly over the replicas")
@click.option("--modes", default="id,upload", show_default=True, help="id: search by indexed id; upload: POST an archive image")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_replicas(milvus_uri, dataset, n_images, model, image_size, requests, concurrency, modes, k, seed, json_path):
    """(c) the local-file service vs one and two `deephash serve` replicas on one Milvus, under one bounded loopback load."""
    from deephash.bench.replicas_bench import run_replicas_bench

    run_replicas_bench(milvus_uri, dataset=dataset, n_images=n_images, model=model, image_size=image_size,
                       requests=requests, concurrency=concurrency, modes=tuple(m for m in modes.split(",") if m), k=k,
                       seed=seed, json_path=json_path, say=click.echo)


@bench.command("milvus-layout", short_help="Bytes per image and query time of deephash's Milvus layout.")
@click.argument("uri")
@click.option("--n", type=int, default=20_000, show_default=True, help="images")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--dim", type=int, default=1280, show_default=True, help="float feature dim (EfficientNet-Lite0: 1280)")
@click.option("--metrics-url", default=None, help="the server's /metrics (e.g. http://127.0.0.1:9091/metrics) for bytes per image")
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_milvus_layout(uri, n, bits, dim, metrics_url, json_path):
    """Bytes per image and query time of deephash's layout in Milvus (URI: milvus://HOST:PORT/COLLECTION, dropped after)."""
    from deephash.bench.milvus_layout_bench import run_milvus_layout_bench

    run_milvus_layout_bench(uri, n=n, bits=bits, dim=dim, metrics_url=metrics_url, json_path=json_path, say=click.echo)


@bench.command("methods", short_help="Every method head-only on cached features under a protocol.")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10', 'fashion-mnist' or the path of an archive with train/test splits")
@click.option("--bits", default="16,32,48,64", show_default=True)
@click.option("--protocol", default="cifar10-50k", show_default=True, help="cifar10-50k, cifar10-54k, cifar10-59k, fashion-mnist (any registered protocol) or demo")
@click.option("--methods", default=None, help="comma-separated (default: every registered method)")
@click.option("--n-query", type=int, default=None, help="subsample the protocol's queries (equal per class)")
@click.option("--n-train", type=int, default=None, help="subsample the protocol's training images (equal per class)")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--param", "params", multiple=True, help="method hyper-parameter [METHOD.]KEY=VALUE (JSON value), repeatable; METHOD. is needed when several --methods run, e.g. mhcln.n_iters=3000")
@click.option("--resume", is_flag=True, help="keep the rows an earlier run already wrote to --json")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
@click.option("--out", "out_dir", type=click.Path(), default=None, help="also write report.md/json and PNG plots here")
@click.option("--int8", is_flag=True, help="features from the int8 backbone (calibrated on 256 archive images)")
@click.option("--rerank-queries", type=int, default=0, show_default=True,
              help="also DLBHC's coarse-to-fine mAP@1000 on this many queries, for methods with re-rank features")
def bench_methods(dataset, bits, protocol, methods, n_query, n_train, backbone, image_size, params, resume, seed, json_path,
                  out_dir, int8, rerank_queries):
    """Train every method head-only on cached features and compare them under one protocol."""
    import numpy as np

    from deephash.backbones import create_backbone
    from deephash.bench.methods_bench import format_methods_markdown, run_methods_bench
    from deephash.cli.params import method_params
    from deephash.data import load_dataset
    from deephash.features import extract_features

    bit_list = _int_list(bits, "--bits")
    overrides = method_params(params, methods.split(",") if methods else None)
    archive = load_dataset(dataset)
    bb = create_backbone(backbone, image_size=image_size)
    if int8:
        from deephash.encoding.int8 import int8_backbone

        bb = int8_backbone(bb, [archive.abspath(i) for i in range(len(archive))])
    fs = extract_features(archive, bb)
    labels = archive.labels[fs.index]
    splits = np.asarray(archive.splits)[fs.index]
    report = run_methods_bench(fs.features, labels, splits, methods=methods.split(",") if methods else None,
                               bits=bit_list, protocol=protocol, n_query=n_query, n_train=n_train, seed=seed,
                               json_path=json_path, method_params=overrides or None, resume=resume,
                               rerank_queries=rerank_queries, progress=True)
    click.echo(format_methods_markdown(report))
    if out_dir:
        from deephash.eval.report import write_report

        rows = [dict(r, bits=r.get("bits")) for r in report["results"] if "error" not in r]
        files = write_report(rows, out_dir, {k: v for k, v in report.items() if k != "results"})
        click.echo("report: " + ", ".join(str(f) for f in files.values()), err=True)


#: ``deephash bench scaling --curve NAME``: what each curve measures, and the folder its results go to by default
SCALING_CURVES = {
    "search": ("exact and IVF search q/s, memory, index save/load time and peak memory vs N codes",
               "docs/results/search-scaling-vs-n"),
    "encode": ("encode time vs archive size, CIFAR-size and 12-MP JPEGs, old vs new encoder",
               "docs/results/encode-time-vs-archive-size"),
    "train": ("training time vs training-set size, one method of each family",
              "docs/results/train-time-vs-training-set-size"),
}


@bench.command("scaling", short_help="Cost curves: search vs N, encode vs images, train vs items.")
@click.option("--curve", "curves", default="search", show_default=True,
              help="comma-separated curves: " + "; ".join(f"{k}: {v[0]}" for k, v in SCALING_CURVES.items()))
@click.option("--n", "ns", default="100000,1000000,10000000", show_default=True, help="search: comma-separated database sizes")
@click.option("--bits", default="64,128", show_default=True, help="search: comma-separated code lengths")
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--isa", "isas", default=None,
              help="comma-separated instruction sets for deephash (avx512, avx2, scalar); default: every vector ISA the CPU has")
@click.option("--nlist", type=int, default=1024, show_default=True, help="FAISS IVF lists")
@click.option("--nprobe", "nprobes", default="4,16", show_default=True, help="comma-separated IVF nprobe values")
@click.option("--repeats", type=int, default=None, help="interleaved repeats (medians) [default: 3 for search, 1 for encode]")
@click.option("--no-index-io", is_flag=True, help="skip the HashIndex save/load and peak-memory measurements")
@click.option("--encode-cifar", default="500,1000,2000,4000", show_default=True, help="encode: CIFAR-10 test JPEGs per point")
@click.option("--encode-12mp", "encode_large", default="10,20,40", show_default=True, help="encode: 12-MP JPEGs per point")
@click.option("--data", type=click.Path(), default=None, help="encode: CIFAR-10 archive (default: $DEEPHASH_CIFAR10 or shared/data)")
@click.option("--train-n", "train_ns", default="2000,5000,10000,20000,50000", show_default=True,
              help="train: comma-separated training-set sizes")
@click.option("--train-methods", default=None, help="train: comma-separated methods [default: dpsh,deep-ranking,mihash,dlbhc,dpq]")
@click.option("--train-iters", type=int, default=200, show_default=True, help="train: iterations per fit (validated once, at the end)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="folder for the JSON files and PNG plots [default: docs/results/<the curve's folder>]")
@click.option("--resume", is_flag=True, help="search: keep the (N, bits) rows an earlier run wrote to --out; measure only the others")
def bench_scaling(curves, ns, bits, k, isas, nlist, nprobes, repeats, no_index_io, encode_cifar, encode_large, data,
                  train_ns, train_methods, train_iters, seed, out_dir, resume):
    """Cost curves: search (q/s, memory, index save/load vs N), encode time vs archive size, training time vs training-set size."""
    from deephash.errors import ConfigError

    chosen = [c for c in curves.split(",") if c]
    unknown = [c for c in chosen if c not in SCALING_CURVES]
    if unknown or not chosen:
        raise ConfigError(f"--curve must name curves among {', '.join(SCALING_CURVES)}; got {curves!r}")
    if repeats is not None and repeats < 1:
        raise ConfigError(f"--repeats must be a positive whole number; got {repeats}")
    if "search" in chosen:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from deephash.bench.scaling_bench import run_scaling_bench

        run_scaling_bench(_int_list(ns, "--n"), _int_list(bits, "--bits"), k=k,
                          isas=[i for i in isas.split(",") if i] if isas else None, nlist=nlist,
                          nprobes=_int_list(nprobes, "--nprobe"), repeats=repeats or 3, seed=seed,
                          index_io=not no_index_io, out_dir=out_dir or SCALING_CURVES["search"][1], resume=resume)
    if "encode" in chosen:
        from deephash.bench.cost_curves import run_encode_curve

        run_encode_curve(_int_list(encode_cifar, "--encode-cifar"), _int_list(encode_large, "--encode-12mp"),
                         repeats=repeats or 1, data=data, seed=seed, out_dir=out_dir or SCALING_CURVES["encode"][1])
    if "train" in chosen:
        from deephash.bench.cost_curves import run_train_curve

        run_train_curve(_int_list(train_ns, "--train-n"), [m for m in train_methods.split(",") if m] if train_methods else None,
                        train_iters=train_iters, seed=seed, out_dir=out_dir or SCALING_CURVES["train"][1])


@bench.command("ray-encode", short_help="Encoding images/s: one process vs a local Ray cluster.")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10' or the path of an archive")
@click.option("--n", "n_images", type=int, default=20_000, show_default=True, help="images to encode (evenly spaced over the archive)")
@click.option("--workers", type=int, default=2, show_default=True, help="Ray workers (CPUs of the local cluster)")
@click.option("--shard-size", type=int, default=1024, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True, help="backbone input size (the fitted model's)")
@click.option("--model", type=click.Path(), default=None, help="checkpoint to encode with (default: ITQ-64 fitted on 1,000 of the images)")
@click.option("--repeats", type=int, default=1, show_default=True, help="interleaved local/ray repeats (medians reported)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_ray_encode(dataset, n_images, workers, shard_size, batch_size, image_size, model, repeats, seed, json_path):
    """Encode N images single-process vs --engine ray (a local cluster): images/s and Ray's overhead."""
    from deephash.bench.ray_bench import format_ray_encode_markdown, run_ray_encode_bench

    r = run_ray_encode_bench(dataset, n_images, workers=workers, shard_size=shard_size, batch_size=batch_size,
                             image_size=image_size, model=model, seed=seed, repeats=repeats,
                             json_path=json_path)
    click.echo(format_ray_encode_markdown(r))
    if json_path:
        click.echo(f"wrote {json_path}", err=True)


@bench.command("encode", short_help="Encoding images/s: streaming encoder, 12-MP JPEGs, int8.")
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 archive (default: $DEEPHASH_CIFAR10 or shared/data)")
@click.option("--n-small", type=int, default=3000, show_default=True, help="CIFAR-10 test JPEGs encoded per run")
@click.option("--n-large", type=int, default=60, show_default=True, help="12-MP JPEGs (made once from CIFAR-10, cached)")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--int8/--no-int8", default=True, show_default=True, help="also measure the int8 backbone")
@click.option("--quality", is_flag=True, help="also measure fidelity: draft vs full decoding, int8 vs float32 (cosine, mAP)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_encode(data, n_small, n_large, repeats, image_size, backbone, int8, quality, seed, json_path):
    """Encoding images/s: the streaming encoder vs the old one, CIFAR-size and 12-MP JPEGs, fp32 vs int8, decode-only limit."""
    from deephash.bench.encode_bench import run_encode_bench
    from deephash.errors import ConfigError

    for name, v in (("--n-small", n_small), ("--n-large", n_large), ("--repeats", repeats)):
        if v < 1:
            raise ConfigError(f"{name} must be a positive whole number; got {v}")
    run_encode_bench(n_small=n_small, n_large=n_large, repeats=repeats, image_size=image_size, backbone_name=backbone,
                     int8=int8, quality=quality, seed=seed, json_path=json_path, data=data)


@bench.command("index-writes", short_help="One added/removed image: journal append vs index rewrite.")
@click.option("--n", "ns", default="5000,50000,200000", show_default=True, help="comma-separated index sizes")
@click.option("--dim", type=int, default=1280, show_default=True, help="float16 feature dim stored per image")
@click.option("--repeats", type=int, default=15, show_default=True, help="single-image adds (then removes) timed")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=None,
              help="where the index files are written (the disk measured; default: a temporary folder)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_index_writes(ns, dim, repeats, folder, seed, json_path):
    """What one added or removed image costs on disk: the journal append (+ fsync) against rewriting
    the index file, and the in-memory change timed apart."""
    from deephash.bench.index_writes_bench import run_index_writes_bench

    run_index_writes_bench(_int_list(ns, "--n"), dim=dim, repeats=repeats, folder=folder, seed=seed,
                           json_path=json_path, say=click.echo)


@bench.command("service", short_help="Load test of deephash serve: searches/s, p50/p99.")
@click.argument("index_path", type=click.Path())
@click.option("--url", default=None, help="measure this running server instead (loopback only); INDEX still names the query images")
@click.option("--requests", "n_requests", type=int, default=300, show_default=True, help="requests per row")
@click.option("--concurrency", default="1,4,16", show_default=True, help="comma-separated numbers of concurrent clients")
@click.option("--modes", default="upload,id", show_default=True,
              help="upload: POST a test image of the archive (decode+backbone+hash+search); id: search by indexed id")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--warmup", type=int, default=20, show_default=True, help="uncounted requests before each mode")
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_service(index_path, url, n_requests, concurrency, modes, k, warmup, json_path):
    """Bounded load benchmark of `deephash serve INDEX` on 127.0.0.1 (a real server process on a free
    port): searches/s and p50/p99 latency per number of concurrent clients."""
    from deephash.bench.service_bench import run_service_bench
    from deephash.errors import ServeError

    r = run_service_bench(index_path, url=url, requests=n_requests, concurrency=_int_list(concurrency, "--concurrency"),
                          modes=[m for m in modes.split(",") if m], k=k, warmup=warmup, json_path=json_path,
                          say=click.echo)
    failed = sum(row["failed"] for row in r["rows"])
    if failed:
        first = next(row["first_failures"][0] for row in r["rows"] if row["failed"])
        raise ServeError(f"{failed} requests failed (first: {first})")


@bench.command("finetune", short_help="End-to-end fine-tuning runs/sweeps under a protocol (GPU).")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10' or the path of an archive with train/test splits")
@click.option("--protocol", default="cifar10-54k", show_default=True, help="a registered protocol (deephash protocols) or 10k50k / 1k5k54k")
@recipe_options
@click.option("--scale-min", type=float, default=1.0, show_default=True, help="random resized crop's minimum area (1: off)")
@click.option("--variants", default=None,
              help='JSON list of runs, each overriding the options above: [{"name": "a", "method": "csq", "epochs": 40, '
                   '"params": {...}}, ...] (default: one run of the options)')
@click.option("--rerank-queries", type=int, default=1000, show_default=True, help="queries for DLBHC's coarse-to-fine evaluation (0: none)")
@click.option("--tiny", is_flag=True, help="3 queries, 8 training and 10 database images per class (a CPU check)")
@click.option("--cache", type=click.Path(), default=None, help=".npz of every decoded image, written once and reused")
@click.option("--workers", type=int, default=None, help="decoding processes")
@click.option("--save-max-mb", type=float, default=16.0, show_default=True, help="delete a variant's checkpoint over this size")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/finetune", show_default=True,
              help="folder for each variant's JSON and checkpoint")
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_finetune(dataset, protocol, method, bits, backbone, image_size, epochs, batch_size, lr, backbone_lr_mult,
                   val_fraction, scale_min, device, params, variants, rerank_queries, tiny, cache, workers, save_max_mb,
                   seed, out_dir, json_path):
    """Fine-tune backbone + head end to end on a protocol's training images and evaluate on its split
    (mAP, query accuracy, speed, coarse-to-fine); --variants runs several recipes in one process."""
    from deephash.bench.finetune_bench import parse_variants, run_finetune_bench
    from deephash.cli.params import method_params
    from deephash.data import load_dataset

    vs = parse_variants(variants)
    methods = sorted({v.get("method", method) for v in vs})
    defaults = dict(method=method, bits=bits, backbone=backbone, image_size=image_size, epochs=epochs,
                    batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult, val_fraction=val_fraction,
                    scale_min=scale_min, device=device)
    run_finetune_bench(load_dataset(dataset), protocol, variants=vs, defaults=defaults,
                       method_params=method_params(params, methods), out_dir=out_dir, rerank_queries=rerank_queries,
                       save_max_mb=save_max_mb, seed=seed, tiny=tiny, workers=workers, cache=cache, json_path=json_path,
                       say=click.echo)
