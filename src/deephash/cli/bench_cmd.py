"""``deephash bench ...``: benchmarks that print a Markdown table and write JSON."""
from __future__ import annotations

import os

import click


@click.group()
def bench() -> None:
    """Benchmarks (search speed, method comparison, encoding speed)."""


def _int_list(value: str, option: str) -> list[int]:
    from deephash.errors import ConfigError

    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers; got {value!r}") from None


@bench.command("search")
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


@bench.command("startup")
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_startup(repeats, json_path):
    """CLI start-up: --help, an argument error and `methods` in fresh processes, against bare python and import torch."""
    import tempfile
    from pathlib import Path

    from deephash.bench.startup_bench import run_startup_bench

    with tempfile.TemporaryDirectory() as tmp:
        run_startup_bench(Path(tmp), repeats=repeats, json_path=json_path, say=click.echo)


@bench.command("query-latency")
@click.argument("index_path", type=click.Path())
@click.option("--queries", multiple=True, type=click.Path(), help="query images or folders (default: images of the indexed archive)")
@click.option("--images", "n_images", type=int, default=100, show_default=True, help="queries timed (after one warm-up)")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_query_latency(index_path, queries, n_images, k, json_path):
    """One query image end to end (decode, backbone, hash, search, re-rank) through the jobs API."""
    from deephash.bench.query_latency_bench import run_query_latency_bench

    run_query_latency_bench(index_path, queries=queries, n_images=n_images, k=k, json_path=json_path, say=click.echo)


@bench.command("scale")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="database codes (the issue's 10^7 needs ~10x this machine's time)")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--queries", "n_queries", type=int, default=200, show_default=True)
@click.option("--milvus", "milvus_uri", default=None, help="milvus://HOST:PORT/COLLECTION to measure Milvus too (the collection is dropped)")
@click.option("--metrics-url", default=None, help="the Milvus server's /metrics, for its query-node memory")
@click.option("--nprobe", default="1,4,16", show_default=True, help="IVF nprobe sweep (FAISS and Milvus)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_scale(n, bits, k, n_queries, milvus_uri, metrics_url, nprobe, seed, json_path):
    """(a) local exact index vs FAISS IVF vs Milvus BIN_FLAT / BIN_IVF_FLAT: insert, memory, q/s, recall@k."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.scale_bench import run_scale_bench

    run_scale_bench(n, bits=bits, k=k, n_queries=n_queries, milvus_uri=milvus_uri, metrics_url=metrics_url,
                    nprobes=[int(p) for p in nprobe.split(",") if p], seed=seed, json_path=json_path, say=click.echo)


@bench.command("milvus-layout")
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


@bench.command("methods")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10', 'fashion-mnist' or the path of an archive with train/test splits")
@click.option("--bits", default="16,32,48,64", show_default=True)
@click.option("--protocol", default="cifar10-50k", show_default=True, help="cifar10-50k, cifar10-54k, cifar10-59k, fashion-mnist (any registered protocol) or demo")
@click.option("--methods", default=None, help="comma-separated (default: every registered method)")
@click.option("--n-query", type=int, default=None, help="subsample the protocol's queries (equal per class)")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--param", "params", multiple=True, help="method hyper-parameter METHOD.KEY=VALUE (KEY=VALUE with one --methods), e.g. mhcln.n_iters=3000")
@click.option("--resume", is_flag=True, help="keep the rows an earlier run already wrote to --json")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
@click.option("--out", "out_dir", type=click.Path(), default=None, help="also write report.md/json and PNG plots here")
@click.option("--int8", is_flag=True, help="features from the int8 backbone (calibrated on 256 archive images)")
def bench_methods(dataset, bits, protocol, methods, n_query, backbone, image_size, params, resume, seed, json_path, out_dir,
                  int8):
    """Train every method head-only on cached features and compare them under one protocol."""
    import numpy as np

    from deephash.backbones import create_backbone
    from deephash.bench.methods_bench import format_methods_markdown, run_methods_bench
    from deephash.data import load_dataset
    from deephash.errors import ConfigError
    from deephash.features import extract_features

    from deephash.cli.params import method_params

    overrides = method_params(params, methods.split(",") if methods else None)
    archive = load_dataset(dataset)
    bb = create_backbone(backbone, image_size=image_size)
    if int8:
        from deephash.encoding.int8 import int8_backbone

        bb = int8_backbone(bb, [archive.abspath(i) for i in range(len(archive))])
    fs = extract_features(archive, bb)
    labels = archive.labels[fs.index]
    splits = np.asarray(archive.splits)[fs.index]
    try:
        bit_list = [int(b) for b in bits.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--bits expects comma-separated integers; got {bits!r}") from None
    report = run_methods_bench(fs.features, labels, splits, methods=methods.split(",") if methods else None,
                               bits=bit_list, protocol=protocol, n_query=n_query, seed=seed, json_path=json_path,
                               method_params=overrides or None, resume=resume, progress=True)
    click.echo(format_methods_markdown(report))
    if out_dir:
        from deephash.eval.report import write_report

        rows = [dict(r, bits=r.get("bits")) for r in report["results"] if "error" not in r]
        files = write_report(rows, out_dir, {k: v for k, v in report.items() if k != "results"})
        click.echo("report: " + ", ".join(str(f) for f in files.values()), err=True)


#: ``deephash bench scaling --curve NAME``: what each curve measures (run by bench_scaling below)
SCALING_CURVES = {
    "search": "exact and IVF search q/s, memory, index save/load time and peak memory vs N codes",
    "encode": "encode time vs archive size, CIFAR-size and 12-MP JPEGs, old vs new encoder",
    "train": "training time vs training-set size, one method of each family",
}


@bench.command("scaling")
@click.option("--curve", "curves", default="search", show_default=True,
              help="comma-separated curves: " + "; ".join(f"{k}: {v}" for k, v in SCALING_CURVES.items()))
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
@click.option("--out", "out_dir", type=click.Path(), default="bench/results/scaling", show_default=True,
              help="folder for the JSON files and PNG plots")
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
                          index_io=not no_index_io, out_dir=out_dir, resume=resume)
    if "encode" in chosen:
        from deephash.bench.cost_curves import run_encode_curve

        run_encode_curve(_int_list(encode_cifar, "--encode-cifar"), _int_list(encode_large, "--encode-12mp"),
                         repeats=repeats or 1, data=data, seed=seed, out_dir=out_dir)
    if "train" in chosen:
        from deephash.bench.cost_curves import run_train_curve

        run_train_curve(_int_list(train_ns, "--train-n"), [m for m in train_methods.split(",") if m] if train_methods else None,
                        train_iters=train_iters, seed=seed, out_dir=out_dir)


@bench.command("ray-encode")
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


@bench.command("encode")
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
