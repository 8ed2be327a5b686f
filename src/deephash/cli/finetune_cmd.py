"""``deephash finetune``: end-to-end training of backbone + hashing head on an image archive.

Registered in :mod:`deephash.cli.main` with ``cli.add_command(finetune)``."""
from __future__ import annotations


import click


def recipe_options(f):
    """The options of a fine-tuning recipe (:class:`~deephash.train.finetune.FinetuneConfig`), shared by
    ``deephash finetune`` and ``deephash bench finetune``."""
    options = [
        click.option("--method", default="dlbhc", show_default=True, help="a network-trained method (deephash methods)"),
        click.option("--bits", type=int, default=64, show_default=True),
        click.option("--backbone", default="efficientnet-lite0", show_default=True),
        click.option("--image-size", type=int, default=224, show_default=True, help="backbone input size (resized on the device)"),
        click.option("--epochs", type=int, default=10, show_default=True),
        click.option("--batch-size", type=int, default=128, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True, help="head learning rate (AdamW, cosine decay)"),
        click.option("--backbone-lr-mult", type=float, default=0.3, show_default=True, help="backbone lr = lr x this"),
        click.option("--val-fraction", type=float, default=0.1, show_default=True,
                     help="held out of the training images for early stopping (0: none, the final weights)"),
        click.option("--device", default="auto", show_default=True, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1..."),
        click.option("--param", "params", multiple=True, help="method hyper-parameter [METHOD.]KEY=VALUE (JSON value), repeatable"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@click.argument("archive", type=click.Path())
@recipe_options
@click.option("--split", default=None, help="split folder to train on (e.g. train)")
@click.option("--labels", type=click.Path(), default=None, help="CSV/JSON label file for a flat folder")
@click.option("--patience", type=int, default=100, show_default=True, help="epochs without validation gain before stopping")
@click.option("--no-augment", is_flag=True, help="no random crop / flip")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", "resume", type=click.Path(), default=None, help="training-state file: resumed when it exists")
@click.option("--out", type=click.Path(), required=True, help="checkpoint to write (.pt); `deephash encode` reads it alone")
@click.option("--report", type=click.Path(), default=None, help="also write the run's report (s/epoch, img/s, validation) as JSON")
def finetune(archive, method, bits, split, labels, backbone, image_size, epochs, batch_size, lr, backbone_lr_mult,
             val_fraction, patience, no_augment, device, params, seed, resume, out, report):
    """Fine-tune the backbone and a hashing method's head end to end on ARCHIVE's images."""
    from deephash.data import open_archive
    from deephash.train.finetune import fine_tune

    from deephash.cli.params import parse_params

    kw = parse_params(params, method)
    a = open_archive(archive, split=split, labels_file=labels)
    h = fine_tune(method, a, bits=bits, backbone=backbone, image_size=image_size, epochs=epochs, batch_size=batch_size,
                  lr=lr, backbone_lr_mult=backbone_lr_mult, val_fraction=val_fraction, patience=patience,
                  augment=not no_augment, device=device, seed=seed, params=kw, checkpoint_path=resume, out=out,
                  progress=True)
    r = h.report_
    if r["skipped"]:
        click.echo(f"skipped {len(r['skipped'])} file(s), e.g. {r['skipped'][0][0]}: {r['skipped'][0][1]}", err=True)
    if report:
        from deephash.utils import atomic_write_json

        atomic_write_json(report, r)
    best = r["best_val_map"]
    click.echo(f"fine-tuned {method} ({bits} bits, {backbone}@{image_size}px) on {r['n_train']} images "
               f"({r['n_val']} held out) on {r['device']}: {r['seconds_per_epoch']:.1f} s/epoch, "
               f"{r['images_per_second']:.0f} images/s"
               + (f", best validation mAP {best:.4f}" if best is not None else "") + f"; checkpoint written to {out}")
