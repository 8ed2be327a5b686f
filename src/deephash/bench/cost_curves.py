"""Cost curves of encoding and training (``deephash bench scaling --curve encode,train``): how the time to
encode an archive grows with its number of images, and how the time to train a method grows with its
training set. (The search curves are :mod:`deephash.bench.scaling_bench`.)

- ``encode``: seconds to encode the first n CIFAR-10 test JPEGs (32x32) and the first n of the bench's
  12-MP JPEGs (:func:`deephash.bench.encode_bench.large_jpegs`), with the streaming encoder as deephash
  runs it (``new``) and, in the same run, the encoder it replaced (``old``), interleaved, medians of
  ``repeats``; plus the CPU time per image and the decoder processes the streaming encoder chose.
- ``train``: seconds for ``fit`` of one method of each family on the first n rows of one set of seeded,
  class-clustered synthetic features (1,280 dimensions like EfficientNet-Lite0's, 10 classes), with a
  fixed number of iterations (``train_iters``, validated once at the end), split into the iterations,
  the validation and the rest (set-up: standardising the features, label bookkeeping, initialisation).

Each curve also gets a least-squares line ``seconds = fixed + per_item * n``: the fixed part is what
every run pays whatever its size, the slope what each item adds. Results: JSON and a PNG per curve.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.errors import ConfigError
from deephash.utils import atomic_write_json

DEFAULT_ENCODE_CIFAR = (500, 1000, 2000, 4000)
DEFAULT_ENCODE_12MP = (10, 20, 40)
DEFAULT_TRAIN_NS = (2000, 5000, 10000, 20000, 50000)
#: one method of each family (``deephash methods --long``)
DEFAULT_TRAIN_METHODS = {"pairwise": "dpsh", "triplet / ranking": "deep-ranking", "implicit": "mihash",
                         "classification": "dlbhc", "quantization": "dpq"}
FEATURE_DIM = 1280


def _check_sizes(name: str, values: Sequence[int]) -> list[int]:
    if not values or any(not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ConfigError(f"{name} must be positive whole numbers; got {list(values)!r}")
    return sorted(int(v) for v in values)


def linear_fit(ns: Sequence[float], seconds: Sequence[float]) -> dict[str, float]:
    """``seconds ≈ fixed_s + per_item_s * n`` by least squares (a single point: all per item)."""
    x, y = np.asarray(ns, float), np.asarray(seconds, float)
    if len(x) < 2:
        return {"fixed_s": 0.0, "per_item_s": float(y[0] / x[0]) if len(x) else 0.0}
    slope, intercept = np.polyfit(x, y, 1)
    return {"fixed_s": float(intercept), "per_item_s": float(slope)}


def _machine() -> dict[str, Any]:
    from deephash.bench.machine import machine_facts

    return machine_facts()


# ----------------------------------------------------------------------------- encode
def encode_curve(sets: dict[str, Sequence[Path]], sizes: dict[str, Sequence[int]],
                 encoders: dict[str, Callable[[Sequence[Path]], int]], *, repeats: int = 1,
                 say: Callable[..., None] = print) -> dict[str, Any]:
    """For each set and size n, each encoder on the set's first n files, ``repeats`` interleaved runs:
    median seconds, images/s and CPU ms per image; a line fitted per set and encoder."""
    from deephash.bench.encode_bench import cpu_seconds

    out: dict[str, Any] = {}
    for set_name, paths in sets.items():
        rows = []
        for n in sizes[set_name]:
            if n > len(paths):
                raise ConfigError(f"the {set_name} set has {len(paths)} images; asked for {n}")
            secs: dict[str, list[float]] = {e: [] for e in encoders}
            cpu: dict[str, list[float]] = {e: [] for e in encoders}
            for r in range(repeats):
                for e, fn in encoders.items():
                    c, t = cpu_seconds(), time.perf_counter()
                    got = fn(paths[:n])
                    secs[e].append(time.perf_counter() - t)
                    cpu[e].append(1000 * (cpu_seconds() - c) / n)
                    if got != n:
                        raise AssertionError(f"{e} encoded {got} of {n} images")
                    say(f"  {set_name} n={n:,} repeat {r + 1}/{repeats} {e:<4} {secs[e][-1]:7.2f} s  "
                        f"{n / secs[e][-1]:7.1f} img/s  {cpu[e][-1]:6.2f} CPU ms/img  load {os.getloadavg()[0]:.1f}")
            rows.append({"n": n, "seconds": {e: statistics.median(v) for e, v in secs.items()},
                         "images_per_s": {e: n / statistics.median(v) for e, v in secs.items()},
                         "cpu_ms_per_image": {e: statistics.median(v) for e, v in cpu.items()},
                         "runs": secs})
        out[set_name] = {"rows": rows}
        add_fits(out[set_name])
    return out


def add_fits(curve: dict[str, Any]) -> dict[str, Any]:
    """``curve["fit"]`` (wall seconds) and ``curve["fit_cpu"]`` (CPU seconds, this process and its decoders) per
    encoder, lines fitted to the curve's rows. On a shared machine the CPU time is the steadier of the two."""
    rows = curve["rows"]
    ns = [r["n"] for r in rows]
    encoders = list(rows[0]["seconds"])
    curve["fit"] = {e: linear_fit(ns, [r["seconds"][e] for r in rows]) for e in encoders}
    curve["fit_cpu"] = {e: linear_fit(ns, [r["n"] * r["cpu_ms_per_image"][e] / 1000 for r in rows]) for e in encoders}
    return curve


def run_encode_curve(cifar_sizes: Sequence[int] = DEFAULT_ENCODE_CIFAR, large_sizes: Sequence[int] = DEFAULT_ENCODE_12MP,
                     *, repeats: int = 1, image_size: int = 128, backbone_name: str = "efficientnet-lite0",
                     data: str | None = None, seed: int = 0, out_dir: str | os.PathLike | None = "docs/results/encode-time-vs-archive-size",
                     large_size: tuple[int, int] | None = None, verbose: bool = True) -> dict[str, Any]:
    """Encode time vs archive size, CIFAR-size and 12-MP JPEGs, old vs new encoder; ``encode-scaling.json`` and
    ``scaling-encode.png`` in ``out_dir``. ``large_size``: the large set's width and height (default 4000x3000)."""
    from deephash.backbones import create_backbone
    from deephash.bench.encode_bench import LARGE_SIZE, large_jpegs, new_encode, old_encode, spinning_copy
    from deephash.data import load_cifar10

    cifar_sizes, large_sizes = _check_sizes("cifar sizes", cifar_sizes), _check_sizes("12-MP sizes", large_sizes)
    say = print if verbose else (lambda *a, **kw: None)
    archive = load_cifar10(data)
    test = archive.split_indices("test")
    small = [archive.abspath(int(i)) for i in test[: max(cifar_sizes)]]
    large_size = tuple(large_size or LARGE_SIZE)
    large = large_jpegs(max(large_sizes), [archive.abspath(int(i)) for i in test], seed=seed, size=large_size)
    bb = create_backbone(backbone_name, image_size=image_size)
    bb.embed(np.zeros((2, image_size, image_size, 3), np.uint8))
    bb_old = spinning_copy(bb)
    bb_old.embed(np.zeros((2, image_size, image_size, 3), np.uint8))
    machine = _machine()
    say(f"# deephash encode cost curve: {backbone_name} at {image_size} px; CIFAR n={cifar_sizes}, 12-MP n={large_sizes}; "
        f"repeats {repeats}; ISA: {machine['isa']}; {machine['cores']} cores; load {machine['load_avg_1m_at_start']}")
    sets = {"cifar": small, "12mp": large}
    sizes = {"cifar": cifar_sizes, "12mp": large_sizes}
    curves: dict[str, Any] = {}
    for name, paths in sets.items():
        info: dict[str, Any] = {}
        encoders = {"old": lambda p: old_encode(p, bb_old), "new": lambda p, i=info: new_encode(p, bb, info=i)}
        curves.update(encode_curve({name: paths}, sizes, encoders, repeats=repeats, say=say))
        curves[name]["new_decoder_processes"] = info.get("workers")  # at the largest n
    out = {"curve": "encode", "backbone": backbone_name, "image_size": image_size, "repeats": repeats, "seed": seed,
           "large_size": list(large_size),
           "machine": machine, "sets": curves}
    say("")
    say(format_encode_curve(out))
    _write(out, out_dir, "encode-scaling.json", plot_encode_curve, say)
    return out


def format_encode_curve(out: dict[str, Any]) -> str:
    """Markdown: per set and n, seconds and images/s of each encoder, new vs old; then the fitted lines."""
    lines = [f"ISA: {out['machine']['isa']}; {out['machine']['cores']} cores; {out['backbone']} at {out['image_size']} px; "
             f"medians of {out['repeats']}", "",
             "| set | images | old s | new s | old img/s | new img/s | new vs old | old CPU ms/img | new CPU ms/img |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in out["sets"].items():
        for r in c["rows"]:
            s, ips, cpu = r["seconds"], r["images_per_s"], r["cpu_ms_per_image"]
            lines.append(f"| {name} | {r['n']:,} | {s['old']:.2f} | {s['new']:.2f} | {ips['old']:.1f} | {ips['new']:.1f} | "
                         f"{ips['new'] / ips['old']:.2f} | {cpu['old']:.2f} | {cpu['new']:.2f} |")
    lines += ["", "| set | encoder | fixed s | ms per image | fixed CPU s | CPU ms per image |", "|---|---|---:|---:|---:|---:|"]
    for name, c in out["sets"].items():
        for e, f in c["fit"].items():
            g = c["fit_cpu"][e]
            lines.append(f"| {name} | {e} | {f['fixed_s']:.2f} | {1000 * f['per_item_s']:.1f} | {g['fixed_s']:.2f} | "
                         f"{1000 * g['per_item_s']:.2f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- train
def clustered_features(n: int, *, dim: int = FEATURE_DIM, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded features around ``n_classes`` random centres (non-negative, like pooled ReLU features), and labels."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, (n_classes, dim)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.gamma(1.0, 0.8, (n, dim)).astype(np.float32)
    return X.astype(np.float32), y.astype(np.int64)


def train_curve(X: np.ndarray, y: np.ndarray, ns: Sequence[int], methods: Sequence[str], *, bits: int = 64,
                train_iters: int = 200, seed: int = 0, say: Callable[..., None] = print) -> dict[str, Any]:
    """``fit`` seconds of each method on the first n rows of ``X``, with ``train_iters`` iterations validated once."""
    from deephash.hashers import create_hasher

    out: dict[str, Any] = {}
    for m in methods:  # untimed: the first fit of a process pays for torch's and the method's start-up
        w = create_hasher(m, bits, seed=seed, n_iters=2, eval_every=2)
        w.fit(X[: min(ns)], y[: min(ns)]) if w.supervised else w.fit(X[: min(ns)])
    for m in methods:
        rows = []
        for n in ns:
            if n > len(X):
                raise ConfigError(f"the feature set has {len(X)} rows; asked for {n}")
            h = create_hasher(m, bits, seed=seed, n_iters=train_iters, eval_every=train_iters)
            t = time.perf_counter()
            h.fit(X[:n], y[:n]) if h.supervised else h.fit(X[:n])
            fit_s = time.perf_counter() - t
            hist = getattr(h, "history_", {}) or {}
            val_s = float(hist.get("validation_s", 0.0))
            it_s = float(hist["val"][-1]["train_s"]) if hist.get("val") else None
            row = {"n": n, "fit_s": fit_s, "validation_s": val_s, "iterations_s": it_s,
                   "other_s": None if it_s is None else max(0.0, fit_s - val_s - it_s)}
            rows.append(row)
            say(f"  {m:<13} n={n:>7,}: fit {fit_s:7.2f} s (iterations {it_s if it_s is None else round(it_s, 2)}, "
                f"validation {val_s:.2f}, other {row['other_s'] if row['other_s'] is None else round(row['other_s'], 2)}) "
                f"load {os.getloadavg()[0]:.1f}")
        out[m] = {"family": getattr(create_hasher(m, bits), "family", ""), "rows": rows,
                  "fit": linear_fit([r["n"] for r in rows], [r["fit_s"] for r in rows])}
    return out


def run_train_curve(ns: Sequence[int] = DEFAULT_TRAIN_NS, methods: Sequence[str] | None = None, *, bits: int = 64,
                    train_iters: int = 200, seed: int = 0, out_dir: str | os.PathLike | None = "docs/results/train-time-vs-training-set-size",
                    verbose: bool = True) -> dict[str, Any]:
    """Training time vs training-set size, one method of each family; ``train-scaling.json`` and
    ``scaling-train.png`` in ``out_dir``."""
    from deephash.hashers import list_hashers

    ns = _check_sizes("training sizes", ns)
    if not isinstance(train_iters, (int, np.integer)) or train_iters < 1:
        raise ConfigError(f"train_iters must be a positive whole number; got {train_iters!r}")
    methods = list(methods or DEFAULT_TRAIN_METHODS.values())
    known = set(list_hashers())
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; known: {sorted(known)}")
    say = print if verbose else (lambda *a, **kw: None)
    machine = _machine()
    say(f"# deephash training cost curve: methods {methods}; n={ns}; {bits} bits; {train_iters} iterations; seed {seed}; "
        f"ISA: {machine['isa']}; {machine['cores']} cores; torch threads {os.environ.get('DEEPHASH_THREADS', '1')}; "
        f"load {machine['load_avg_1m_at_start']}")
    X, y = clustered_features(max(ns), seed=seed)
    curves = train_curve(X, y, ns, methods, bits=bits, train_iters=train_iters, seed=seed, say=say)
    out = {"curve": "train", "bits": bits, "train_iters": train_iters, "seed": seed,
           "features": {"kind": "synthetic class-clustered (gamma)", "dim": FEATURE_DIM, "classes": 10},
           "machine": machine, "methods": curves}
    say("")
    say(format_train_curve(out))
    _write(out, out_dir, "train-scaling.json", plot_train_curve, say)
    return out


def format_train_curve(out: dict[str, Any]) -> str:
    """Markdown: fit seconds per method and n, then the fitted lines."""
    methods = out["methods"]
    ns = sorted({r["n"] for c in methods.values() for r in c["rows"]})
    lines = [f"ISA: {out['machine']['isa']}; {out['machine']['cores']} cores; {out['bits']} bits; "
             f"{out['train_iters']} iterations, validated once", "",
             "| method (family) | " + " | ".join(f"n={n:,} s" for n in ns) + " | fixed s | ms per 1k items |",
             "|---|" + "---:|" * (len(ns) + 2)]
    for m, c in methods.items():
        by_n = {r["n"]: r["fit_s"] for r in c["rows"]}
        lines.append(f"| {m} ({c['family']}) | " + " | ".join(f"{by_n[n]:.2f}" if n in by_n else "–" for n in ns)
                     + f" | {c['fit']['fixed_s']:.2f} | {1e6 * c['fit']['per_item_s']:.1f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- output
def _write(out: dict[str, Any], out_dir, name: str, plot: Callable[[dict[str, Any], Path], Path], say) -> None:
    if out_dir is None:
        return
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / name, out)
    png = plot(out, out_dir)
    say(f"\nwrote {out_dir / name}, {png}")


def _pyplot():
    from deephash.optional import require

    matplotlib = require("matplotlib", "the cost-curve plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "the cost-curve plots")


def plot_encode_curve(out: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """``scaling-encode.png``: per set (columns), wall seconds (top) and CPU seconds (bottom) vs images, log-log,
    old and new, with the fitted lines."""
    plt = _pyplot()
    sets = out["sets"]
    fig, axes = plt.subplots(2, len(sets), figsize=(6 * len(sets), 8.4), squeeze=False)
    for col, (name, c) in enumerate(sets.items()):
        ns = [r["n"] for r in c["rows"]]
        xs = np.linspace(min(ns), max(ns), 50)
        for ax, fits, what, y_of in ((axes[0][col], c["fit"], "wall seconds", lambda r, e: r["seconds"][e]),
                                     (axes[1][col], c["fit_cpu"], "CPU seconds (process + decoders)",
                                      lambda r, e: r["n"] * r["cpu_ms_per_image"][e] / 1000)):
            for i, e in enumerate(c["rows"][0]["seconds"]):
                ax.plot(ns, [y_of(r, e) for r in c["rows"]], marker="o", color=f"C{i}", label=f"{e} encoder")
                f = fits[e]
                ax.plot(xs, np.maximum(f["fixed_s"] + f["per_item_s"] * xs, 1e-3), ls=":", color=f"C{i}", lw=0.9,
                        label=f"{e}: {f['fixed_s']:.1f} s + {1000 * f['per_item_s']:.1f} ms/img")
            ax.set(xscale="log", yscale="log", xlabel="images", ylabel=what,
                   title=f"encode {what.split(' (')[0]} vs archive size: {name} ({out['backbone']} {out['image_size']} px)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "scaling-encode.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_train_curve(out: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """``scaling-train.png``: fit seconds vs training-set size per method (log-log), and its validation part."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
    for i, (m, c) in enumerate(out["methods"].items()):
        ns = [r["n"] for r in c["rows"]]
        a1.plot(ns, [r["fit_s"] for r in c["rows"]], marker="o", color=f"C{i}", label=f"{m} ({c['family']})")
        a2.plot(ns, [max(r["validation_s"], 1e-3) for r in c["rows"]], marker="o", color=f"C{i}", label=f"{m} validation")
        a2.plot(ns, [max(r["other_s"] or 0.0, 1e-3) for r in c["rows"]], marker="x", ls="--", color=f"C{i}",
                label=f"{m} set-up")
    a1.set(xscale="log", yscale="log", xlabel="training items", ylabel="fit seconds",
           title=f"training time vs training-set size ({out['train_iters']} iterations, {out['bits']} bits)")
    a2.set(xscale="log", yscale="log", xlabel="training items", ylabel="seconds",
           title="the parts that grow with n: validation, set-up")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "scaling-train.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
