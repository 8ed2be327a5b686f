"""The ``deephash`` command line: a thin layer over the public Python API."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from deephash import __version__
from deephash.errors import DeepHashError
from deephash.names import display_path  # file names are bytes: shown with \xNN escapes


class DeepHashGroup(click.Group):
    """Prints DeepHashError as one clear line (no traceback) and exits 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeepHashError as e:  # one line, printable: names in messages may hold newlines or non-UTF-8 bytes
            click.echo(f"error: {display_path(str(e))}", err=True)
            sys.exit(2)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """deephash's own warnings (e.g. a training set too small for the method) as one line."""
    from deephash.hashers._training_size import SmallTrainingSetWarning

    if issubclass(category, SmallTrainingSetWarning):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


_default_format_warning = warnings.formatwarning


@click.group(cls=DeepHashGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deephash")
def cli() -> None:
    """deephash: content-based image retrieval with deep hashing."""
    warnings.formatwarning = _format_warning


def show_progress(quiet: bool) -> bool:
    """Progress bars on stderr: on when stderr is a terminal, off with --quiet or when it is redirected."""
    return not quiet and sys.stderr.isatty()


def main() -> None:
    cli(prog_name="deephash")


def _write_json(path: str | None, obj) -> None:
    if path:
        from deephash.utils import atomic_write_json

        atomic_write_json(path, obj)
        click.echo(f"wrote {path}", err=True)


# ----------------------------------------------------------------------------- demo
@cli.command()
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 image folder or .tar.gz (default: $DEEPHASH_CIFAR10 or shared/data).")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--n-query", type=int, default=1000, show_default=True, help="test images used as queries (equal per class)")
@click.option("--n-database", type=int, default=None, help="per-class sample of the training split as database (default: all 50,000)")
@click.option("--image-size", type=int, default=128, show_default=True, help="backbone input size in pixels")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--iters", "n_iters", type=int, default=4000, show_default=True, help="MHCLN training iterations")
@click.option("--loss-variant", type=click.Choice(["code", "paper"]), default="code", show_default=True)
@click.option("--full", is_flag=True, help="all 10,000 test queries against all 50,000 training images")
@click.option("--out", "out_dir", default="runs/demo", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None, help="also write the results as JSON here")
def demo(data, bits, n_query, n_database, image_size, backbone, n_iters, loss_variant, full, out_dir, seed, json_path):
    """CIFAR-10 end to end: features, MHCLN, index, search, mAP against LSH and float kNN."""
    from deephash.demo import DemoConfig, format_demo_table, run_demo

    if full:
        n_query, n_database = 10000, None
    r = run_demo(DemoConfig(data=data, bits=bits, backbone=backbone, image_size=image_size, n_query=n_query,
                            n_database=n_database, n_iters=n_iters, loss_variant=loss_variant, seed=seed,
                            out_dir=out_dir))
    click.echo(format_demo_table(r))
    _write_json(json_path, r)


# ----------------------------------------------------------------------------- listings
@cli.command()
@click.option("-l", "--long", "long_", is_flag=True, help="also print each method's survey family and whether it needs labels")
def methods(long_: bool) -> None:
    """Print the registered hashing methods, one a line."""
    from deephash.hashers import HASHERS, list_hashers

    for n in list_hashers():
        if long_:
            cls = HASHERS.get(n)
            click.echo(f"{n:<18s} {'supervised' if cls.supervised else 'unsupervised':<13s} {cls.family}")
        else:
            click.echo(n)


@cli.command()
def backbones() -> None:
    """Print the registered backbones, one a line."""
    from deephash.backbones import list_backbones

    for n in list_backbones():
        click.echo(n)


# ----------------------------------------------------------------------------- train / encode / index
def _open(archive: str, split: str | None, labels: str | None):
    from deephash.data import open_archive

    return open_archive(archive, split=split, labels_file=labels)


def _report_skipped(skipped, ignored=()) -> None:
    """Files that could not be used, each with its reason; files that are no images, counted by suffix."""
    if ignored:
        from collections import Counter

        by = Counter(Path(p).suffix.lower() or "(no suffix)" for p in ignored)
        click.echo(f"ignored {len(ignored)} file(s) that are not images: "
                   + ", ".join(f"{s} {n}" for s, n in by.most_common()), err=True)
    if skipped:
        click.echo(f"skipped {len(skipped)} file(s):", err=True)
        for p, r in skipped[:20]:
            head, sep, rest = r.partition(": ")
            if sep and (head == p or head.endswith("/" + p)):  # the reason repeats the file's name
                r = rest
            click.echo(f"  {display_path(p)}: {display_path(r)}", err=True)
        if len(skipped) > 20:
            click.echo(f"  ... and {len(skipped) - 20} more", err=True)


@cli.command()
@click.argument("archive", type=click.Path())
@click.option("--method", default="mhcln", show_default=True)
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--split", default=None, help="split to train on (a split folder, or the label file's 'split' column)")
@click.option("--labels", type=click.Path(), default=None, help="CSV/JSON label file for a flat folder")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--iters", "n_iters", type=click.IntRange(min=1), default=None,
              help="training iterations (deep methods; default: the method's, stopped early when validation stalls)")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="training length in passes over the training images (deep methods; instead of --iters)")
@click.option("--param", "params", multiple=True, help="method hyper-parameter [METHOD.]KEY=VALUE (JSON value), repeatable")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@click.option("--int8", is_flag=True, help="int8 backbone (ONNX Runtime static quantisation, calibrated on 256 archive images; cached)")
@click.option("--out", "out", type=click.Path(), required=True, help="checkpoint file to write (.pt)")
def train(archive, method, bits, split, labels, backbone, image_size, n_iters, epochs, params, seed, quiet, out, int8):
    """Train a hashing method head-only on an archive's cached backbone features."""
    from deephash import api
    from deephash.cli.params import parse_params

    if n_iters is not None and epochs is not None:
        raise click.UsageError("give --iters or --epochs, not both")
    r = api.train(api.TrainConfig(archive=archive, out=out, method=method, bits=bits, split=split, labels=labels,
                                  backbone=backbone, image_size=image_size, params=parse_params(params, method), seed=seed,
                                  progress=show_progress(quiet), n_iters=n_iters, epochs=epochs, int8=int8))
    _report_skipped(r.skipped, r.ignored)
    how = ""
    if r.history:
        how = f", {r.history['iters']} iterations" + (" (stopped early: validation stopped improving)"
                                                       if r.history.get("early_stopped_at") else "")
    click.echo(f"trained {method} ({bits} bits) on {r.n_images} images{how}; checkpoint written to {out}")


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(), default=None,
              help="write codes as .npy (uint8, n x bits/8) instead of printing hex, and OUT.files.json: the file of each row")
@click.option("--batch-size", type=int, default=64, show_default=True, help="images encoded per backbone call")
@click.option("--int8", is_flag=True, help="int8 backbone (ONNX Runtime static quantisation, calibrated on 256 of the images; cached)")
def encode(checkpoint, images, out, batch_size, int8):
    """Hash images (files or folders) with a trained checkpoint alone."""
    from deephash import api

    r = api.encode(checkpoint, images, batch_size=batch_size, out=out, int8=int8)
    _report_skipped(r.skipped)
    if out:
        click.echo(f"wrote {len(r.codes)} codes to {out} and the file of each row to {r.files_out}")
    else:
        for f, c in zip(r.files, r.codes):
            click.echo(f"{c.tobytes().hex()}  {display_path(str(f))}")


@cli.command("index")
@click.argument("archive", type=click.Path())
@click.option("--model", "checkpoint", type=click.Path(), required=True, help="trained checkpoint (.pt)")
@click.option("--split", default=None)
@click.option("--labels", type=click.Path(), default=None)
@click.option("--features/--no-features", default=True, show_default=True, help="store float16 features for re-ranking")
@click.option("--out", type=click.Path(), required=True,
              help="index to write: a file (.dhi; exact search), the file searched through FAISS "
                   "(faiss-ivf:FILE?nlist=N&nprobe=N, faiss-hnsw:FILE?M=N&ef_search=N, faiss-mih:FILE?nflip=N; "
                   "approximate) or milvus://HOST:PORT/COLLECTION")
@click.option("--update", is_flag=True, help="OUT exists: add the archive's images it does not hold yet (no retraining)")
@click.option("--prune", is_flag=True, help="with --update: also remove the entries whose files left the archive")
@click.option("--milvus-index", type=click.Choice(["auto", "flat", "ivf"]), default=None,
              help="milvus:// only: BIN_FLAT (exact), BIN_IVF_FLAT, or auto (flat below 10^6 codes)  [default: auto]")
@click.option("--milvus-token", default=None, help="milvus:// only: the server's token (or $DEEPHASH_MILVUS_TOKEN); never printed")
@click.option("--engine", default="local", show_default=True, help="where images are encoded: local (this process) or ray")
@click.option("--address", default=None, help="--engine ray: a running Ray cluster (ray://HOST:10001 or auto; default: start a local one)")
@click.option("--workers", type=int, default=None, help="--engine ray: worker processes of the local cluster (default 2)")
@click.option("--shard-size", type=int, default=None, help="--engine ray: images per shard, the unit that is resumed (default 1024)")
@click.option("--int8", is_flag=True, help="int8 backbone (ONNX Runtime static quantisation, calibrated on 256 archive images; cached)")
def index_cmd(archive, checkpoint, split, labels, features, out, update, prune, milvus_index, milvus_token, engine, address,
              workers, shard_size, int8):
    """Encode an archive with a trained model and write a searchable index (or update one)."""
    from deephash import api

    if prune and not update:
        raise click.UsageError("--prune only applies with --update")
    if int8 and update:
        raise click.UsageError("--int8 applies to a new index (an update calibrates nothing anew)")
    opts = backend_options(milvus_token)
    given = {"address": address, "workers": workers, "shard_size": shard_size}
    engine_options = {k: v for k, v in given.items() if v is not None}
    from deephash.index.backend import local_path

    file = local_path(out)  # a bad URI is refused before any work
    if not update and file is not None:
        from deephash.utils import check_writable

        check_writable(file)  # before a .tar.gz is unpacked and encoded
    a = _open(archive, split, labels)
    if update:
        r = api.update_index(a, checkpoint, out, prune=prune, engine=engine, engine_options=engine_options, **opts)
        _report_skipped(r.skipped, r.ignored)
        how = "rewrote the index file" if r.rewritten else (f"appended to its journal ({r.journal_bytes / 1024:.1f} KiB)"
                                                             if r.journal_bytes else "written to the server")
        click.echo(f"updated {out}: added {r.added}, removed {r.removed}; it holds {r.total} images; {how}"
                   f"{_engine_note(r.encoding)}")
        return
    if milvus_index is not None:
        opts["index_type"] = milvus_index
    b = api.build_index(a, checkpoint, out, store_features=features, engine=engine, engine_options=engine_options,
                        int8=int8, **opts)
    _report_skipped(b.skipped, b.ignored)
    click.echo(f"indexed {len(b.index)} images ({b.index.n_bits} bits) into {out}{_engine_note(b.encoding)}")


def _engine_note(e: dict) -> str:
    """`` (ray: 9 shards, 9 encoded, 0 reused from DIR)`` for a sharded engine's stats, else nothing."""
    if not e.get("shards"):
        return ""
    return f" ({e['engine']}: {e['shards']} shards, {e['computed_shards']} encoded, {e['reused_shards']} reused from {e['run_dir']})"


def backend_options(milvus_token: str | None) -> dict:
    """Options for a server index, only those given (a local file takes none)."""
    return {} if milvus_token is None else {"token": milvus_token}


@cli.command()
@click.argument("index_path", type=click.Path(), metavar="INDEX")
@click.argument("images", nargs=-1)
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="neighbours per query (capped at the index size)")
@click.option("--radius", type=int, default=None, help="only neighbours within this Hamming distance")
@click.option("--label", default=None, help="only neighbours of this class")
@click.option("--rerank", is_flag=True, help="DLBHC coarse-to-fine: Hamming pool re-ranked by float features")
@click.option("--exclude-self", is_flag=True, help='leave the query image itself out ("more like this")')
@click.option("--id", "ids", type=int, multiple=True, help="an indexed image's id as the query (repeatable)")
@click.option("--model", type=click.Path(), default=None, help="checkpoint to encode queries with (default: the one the index names)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (one object per line for several queries)")
@click.option("--milvus-token", default=None, help="milvus:// only: the server's token (or $DEEPHASH_MILVUS_TOKEN); never printed")
def search(index_path, images, k, radius, label, rerank, exclude_self, ids, model, as_json, milvus_token):
    """Print the k nearest neighbours of each query IMAGE (files or folders) in INDEX (a file, searched
    as it records; faiss-ivf:FILE?nprobe=N and the like to search it through a FAISS structure; or
    milvus://HOST:PORT/COLLECTION)."""
    from deephash import api
    from deephash.query import format_table, format_timings

    if not images and not ids:
        raise click.UsageError("give at least one query image (file or folder) or --id")
    res = api.search(index_path, images, ids=ids, k=k, radius=radius, label=label, rerank=rerank,
                     exclude_self=exclude_self, model=model, **backend_options(milvus_token))
    _report_skipped(res.skipped)
    many = len(res) > 1
    for a in res:
        if as_json:
            click.echo(json.dumps({"query": display_path(str(a.query)), **a.json}) if many else json.dumps(a.json, indent=2))
            continue
        click.echo(f"query {display_path(str(a.query))}  ({format_timings(a.json['timings_ms'])})")
        click.echo(format_table(a.json))
        if many:
            click.echo("")


from deephash.cli.bench_cmd import bench  # noqa: E402
from deephash.cli.eval_cmd import evaluate, protocols  # noqa: E402
from deephash.cli.finetune_cmd import finetune  # noqa: E402
from deephash.cli.serve_cmd import serve  # noqa: E402

cli.add_command(bench)
cli.add_command(serve)
cli.add_command(finetune)
cli.add_command(evaluate)
cli.add_command(protocols)

if __name__ == "__main__":  # pragma: no cover
    main()
