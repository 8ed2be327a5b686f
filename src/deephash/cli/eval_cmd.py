"""``deephash protocols`` and ``deephash evaluate``."""
from __future__ import annotations

import click


@click.command()
def protocols() -> None:
    """Print the evaluation protocols, one a line: name, what it is, its mAP cutoff."""
    from deephash.eval import get_protocol, list_protocols

    names = list_protocols()
    width = max(map(len, names))
    for name in names:
        p = get_protocol(name)
        k = "all" if p.topk is None else f"{p.topk:,}"
        click.echo(f"{name:<{width}}  {p.description} (mAP@{k})")


def _ints(s: str) -> list[int]:
    from deephash.errors import ConfigError

    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--bits expects comma-separated integers such as 16,32,64; got {s!r}") from None


@click.command()
@click.option("--dataset", default="cifar10", show_default=True, help="'cifar10' or the path of an archive")
@click.option("--protocol", "protocol_name", required=True, help="a name from `deephash protocols`")
@click.option("--model", "checkpoints", multiple=True, type=click.Path(), help="trained checkpoint (repeatable)")
@click.option("--method", "methods", multiple=True, help="train this method head-only on the protocol's training split (repeatable)")
@click.option("--bits", default="64", show_default=True, help="code lengths for --method, e.g. 16,32,64")
@click.option("--backbone", default="efficientnet-lite0", show_default=True)
@click.option("--image-size", type=int, default=128, show_default=True)
@click.option("--reduce", "reduce_to", default=None, help="N_QUERY,N_DATABASE: a per-class subsample (reported as REDUCED)")
@click.option("--split-file", type=click.Path(), default=None, help="reuse a saved split (image ids) instead of drawing one")
@click.option("--labels", type=click.Path(), default=None, help="label file for a flat-folder archive")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", default="runs/eval", show_default=True)
def evaluate(dataset, protocol_name, checkpoints, methods, bits, backbone, image_size, reduce_to, split_file, labels,
             seed, out_dir):
    """Evaluate models under a named protocol; write report.md, report.json and PNG plots."""
    from deephash.data import load_cifar10, open_archive
    from deephash.eval import get_protocol
    from deephash.eval.run import evaluate_archive

    archive = load_cifar10() if dataset == "cifar10" else open_archive(dataset, labels_file=labels)
    protocol = get_protocol(protocol_name)
    if reduce_to:
        nq, nd = _ints(reduce_to)
        protocol = protocol.reduced(nq, nd, seed)
    r = evaluate_archive(archive, protocol, out_dir, checkpoints=checkpoints, methods=methods, bits=_ints(bits),
                         backbone=backbone, image_size=image_size, seed=seed, split_file=split_file)
    click.echo(f"report written to {out_dir}: " + ", ".join(sorted(r["files"])))
