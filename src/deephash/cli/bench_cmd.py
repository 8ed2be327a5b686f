"""``deephash bench ...``: benchmarks that print a Markdown table and write JSON."""
from __future__ import annotations

import os

import click


@click.group()
def bench() -> None:
    """Benchmarks (search speed, method comparison, encoding speed)."""


@bench.command("search")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="database codes")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--queries", "n_queries", type=int, default=1000, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--random", "random_codes", is_flag=True, help="uniformly random codes instead of class-clustered ones")
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--sublinear", default="ivf,hnsw,mih,radius", show_default=True,
              help="comma-separated sub-linear indexes to measure ('' for none)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_search(n, bits, k, n_queries, threads, random_codes, repeats, sublinear, seed, json_path):
    """Exact search QPS against FAISS IndexBinaryFlat and the XOR+popcount ceiling; sub-linear recall curves."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.search_bench import run_search_bench

    subs = [s for s in sublinear.split(",") if s] or None
    run_search_bench(n, bits, k, n_queries, threads, not random_codes, json_path, repeats=repeats, seed=seed,
                     sublinear=subs)


@bench.command("methods")
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10' or the path of an archive with train/test splits")
@click.option("--bits", default="16,32,48,64", show_default=True)
@click.option("--protocol", default="cifar10-50k", show_default=True, help="cifar10-50k, cifar10-54k, cifar10-59k or demo")
@click.option("--methods", default=None, help="comma-separated (default: every registered method)")
@click.option("--n-query", type=int, default=None, help="subsample the protocol's queries (equal per class)")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--param", "params", multiple=True, help="METHOD.KEY=VALUE constructor override, e.g. mhcln.n_iters=3000")
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
    from deephash.data import load_cifar10, open_archive
    from deephash.errors import ConfigError
    from deephash.features import extract_features

    from deephash.cli.params import parse_params

    overrides: dict = {}
    for key, val in parse_params(params).items():
        if "." not in key:
            raise ConfigError(f"--param expects METHOD.KEY=VALUE; got {key!r}")
        m, k = key.split(".", 1)
        overrides.setdefault(m, {})[k] = val
    archive = load_cifar10() if dataset == "cifar10" else open_archive(dataset)
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
