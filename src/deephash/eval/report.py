"""Evaluation reports: Markdown tables, a JSON file with every number, and PNG plots.

``write_report(results, out_dir, config)`` takes one dict per (method, code length):

- ``method`` (str) and ``bits`` (int, or ``None`` for float features: the exact-kNN ceiling);
- the output of :func:`~deephash.eval.metrics.evaluate_codes` /
  :func:`~deephash.eval.metrics.evaluate_features` merged in: ``map``, ``tie_aware_map``,
  ``topk``, ``precision_at_radius``, ``recall_at_radius``, ``radius``,
  ``empty_ball_fraction``, ``p_at_k`` ``{"k", "precision", ...}``, ``pr_curve``
  ``{"radius", "precision", "recall"}`` (the Hamming-only ones may be absent);
- costs, each optional: ``train_s`` (seconds to train), ``encode_s`` (seconds to encode the
  database and queries), ``query_s`` (seconds per query of index search), ``model_bytes``,
  ``index_bytes``.

``config`` is the full configuration (the protocol's ``to_dict()`` under ``"protocol"``,
dataset, features, seeds, ...); it is written into both files.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash.errors import ConfigError
from deephash.optional import require
from deephash.utils import atomic_path, atomic_write_bytes, atomic_write_json

REPORT_FORMAT = "deephash-report"
REPORT_FORMAT_VERSION = 1

DEFINITIONS = """\
- **mAP@K**: AP of a query = (1/R_K) * sum over relevant ranks k <= K of P@k, where R_K is the
  number of relevant items found in the top K; a query with none in its top K scores 0 and
  counts. Items at equal Hamming distance are ranked by database position (stable sort).
- **tie-aware mAP**: the exact expected mAP@K when items at equal distance are ranked in
  uniformly random order (closed form, including a cutoff K that falls inside a tie). A gap
  between it and mAP means the usual number depends on how ties happen to be ordered.
- **P@r / R@r**: precision and recall of the Hamming ball of radius r; an empty ball scores
  precision 0 (it is not left out), a query with nothing relevant scores recall 0.
- **PR curve**: (R@r, P@r) for r = 0..n_bits, means over queries with the rules above, so
  precision at small radii is pulled down by empty balls.
- **P@K curve**: precision of the top K (ties by database position).
- All numbers are means over every query."""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _fmt_bytes(n: Any) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _fmt_s(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _fmt_ms(x: Any) -> str:
    return "–" if x is None else f"{x * 1000:.3f}"


def _bits_label(b: Any) -> str:
    return "float" if b is None else f"{b} bits"


def _check_results(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not results:
        raise ConfigError("write_report needs at least one result")
    out = []
    for i, r in enumerate(results):
        missing = [k for k in ("method", "bits", "map", "tie_aware_map") if k not in r]
        if missing:
            raise ConfigError(f"result {i} lacks {missing}; each result needs method, bits, map and tie_aware_map")
        out.append(dict(r))
    return out


def _methods(results: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def _bit_lengths(results: list[dict[str, Any]]) -> list[int]:
    return sorted({int(r["bits"]) for r in results if r["bits"] is not None})


def _protocol_words(config: dict[str, Any]) -> str:
    p = config.get("protocol")
    if isinstance(p, dict):
        return p.get("words") or "\n".join(f"{k}: {v}" for k, v in p.items())
    if hasattr(p, "describe"):
        return p.describe()
    return str(p) if p is not None else "(no protocol given)"


def _markdown(results: list[dict[str, Any]], config: dict[str, Any], pngs: dict[str, str]) -> str:
    methods, bits = _methods(results), _bit_lengths(results)
    has_float = any(r["bits"] is None for r in results)
    by = {(r["method"], r["bits"]): r for r in results}
    topks = sorted({r.get("topk") for r in results if r.get("topk") is not None})
    k_words = ", ".join(f"{k:,}" for k in topks) if topks else "all"
    title = config.get("title", "deephash evaluation report")
    lines = [f"# {title}", ""]
    if config.get("note"):
        lines += [f"> {config['note']}", ""]
    lines += ["## Protocol", "", "```text", _protocol_words(config), "```", ""]
    setup = {k: v for k, v in config.items() if k not in ("protocol", "title", "note")}
    if setup:
        lines += ["## Setup", ""]
        lines += [f"- **{k}**: {v}" for k, v in setup.items()]
        lines.append("")

    cols = [f"{b} bits" for b in bits] + (["float"] if has_float else [])
    keys = [b for b in bits] + ([None] if has_float else [])
    lines += [f"## mAP@{k_words} / tie-aware mAP", "",
              "Each cell: mAP (ties by database position) / tie-aware mAP (expected over random tie order).", ""]
    lines += ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for m in methods:
        cells = []
        for b in keys:
            r = by.get((m, b))
            cells.append("" if r is None else f"{_fmt(r['map'])} / {_fmt(r['tie_aware_map'])}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    ses = [r.get("map_stderr") for r in results if r.get("map_stderr") is not None]
    if ses:
        lines += ["", f"Standard error of each mAP (over queries): at most {max(ses):.4f}."]
    lines.append("")

    ham = [r for r in results if r.get("precision_at_radius") is not None]
    if ham:
        radius = ham[0].get("radius", 2)
        lines += [f"## Hamming ball of radius {radius}", "",
                  f"| method | bits | P@r≤{radius} | R@r≤{radius} | queries with an empty ball |", "|---|---|---|---|---|"]
        for r in ham:
            lines.append(
                f"| {r['method']} | {r['bits']} | {_fmt(r['precision_at_radius'])} | {_fmt(r.get('recall_at_radius'))} "
                f"| {_fmt(100 * r['empty_ball_fraction'], 1) + ' %' if r.get('empty_ball_fraction') is not None else '–'} |"
            )
        lines.append("")

    pk = [r for r in results if r.get("p_at_k")]
    if pk:
        ks_all = pk[0]["p_at_k"]["k"]
        show = [k for k in (1, 10, 100, 500, 1000) if k in ks_all] or list(ks_all[:5])
        lines += ["## Precision at K", "", "| method | bits | " + " | ".join(f"P@{k}" for k in show) + " |",
                  "|---|---|" + "---|" * len(show)]
        for r in pk:
            kk = list(r["p_at_k"]["k"])
            vals = [_fmt(r["p_at_k"]["precision"][kk.index(k)]) if k in kk else "–" for k in show]
            lines.append(f"| {r['method']} | {_bits_label(r['bits'])} | " + " | ".join(vals) + " |")
        lines.append("")

    lines += ["## Cost", "",
              "| method | bits | train (s) | encode (s) | query (ms/query) | model size | index size |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['method']} | {_bits_label(r['bits'])} | {_fmt_s(r.get('train_s'))} | {_fmt_s(r.get('encode_s'))} "
            f"| {_fmt_ms(r.get('query_s'))} | {_fmt_bytes(r.get('model_bytes'))} | {_fmt_bytes(r.get('index_bytes'))} |"
        )
    lines.append("")

    lines += ["## Plots", ""]
    captions = {
        "pr_curves": "Precision–recall over Hamming radii 0..n_bits (the larger marker is r = 2)",
        "p_at_k": "Precision at K",
        "map_vs_bits": "mAP against code length (solid: mAP; dashed: tie-aware mAP; dotted: float features)",
    }
    for key, fname in pngs.items():
        lines += [f"**{captions[key]}**", "", f"![{captions[key]}]({fname})", ""]
    lines += ["## Definitions", "", DEFINITIONS, ""]
    lines += [f"_Written {config.get('created', '')} by deephash; every number is in report.json._", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ plots


_MARKERS = "osD^vP*Xh<>p"


def _colors(methods: list[str]) -> dict[str, Any]:
    """A distinct colour per method: tab10 up to 10 methods, tab20 up to 20, then cycling
    (the marker, from :func:`_marker`, tells cycled colours apart)."""
    matplotlib = require("matplotlib", "the report's plots")

    cmap = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _marker(colors: dict[str, Any], method: str) -> str:
    return _MARKERS[list(colors).index(method) % len(_MARKERS)] if method in colors else "o"


def _legend(ax, n_entries: int) -> None:
    """Inside the axes for a few entries; beside them, in columns, for many (18 methods would hide the plot)."""
    if n_entries <= 6:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 + n_entries // 16, frameon=False)


def _save(fig: Any, path: Path) -> None:
    plt = require("matplotlib.pyplot", "the report's plots")

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _subplots(n: int, title: str):
    plt = require("matplotlib.pyplot", "the report's plots")

    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.0), squeeze=False)
    fig.suptitle(title)
    return fig, axes[0]


def _plot_pr(results: list[dict[str, Any]], path: Path, colors: dict[str, Any]) -> bool:
    ham = [r for r in results if r.get("pr_curve")]
    if not ham:
        return False
    bits = sorted({r["bits"] for r in ham})
    fig, axes = _subplots(len(bits), "Precision–recall over Hamming radii")
    for ax, b in zip(axes, bits):
        for r in (r for r in ham if r["bits"] == b):
            pr = r["pr_curve"]
            rec, prec = np.asarray(pr["recall"]), np.asarray(pr["precision"])
            ax.plot(rec, prec, marker=_marker(colors, r["method"]), ms=3, lw=1.4, color=colors[r["method"]],
                    label=r["method"])
            rad = int(r.get("radius", 2))
            if rad < len(rec):
                ax.plot(rec[rad], prec[rad], "o", ms=7, color=colors[r["method"]], mfc="white")
        ax.set_title(f"{b} bits")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    _legend(axes[-1], len(ax.get_legend_handles_labels()[0]))
    _save(fig, path)
    return True


def _plot_pk(results: list[dict[str, Any]], path: Path, colors: dict[str, Any]) -> bool:
    pk = [r for r in results if r.get("p_at_k")]
    if not pk:
        return False
    bits = sorted({r["bits"] for r in pk if r["bits"] is not None}) or [None]
    floats = [r for r in pk if r["bits"] is None]
    fig, axes = _subplots(len(bits), "Precision at K (tie-aware: expected over random orders within ties)")
    for ax, b in zip(axes, bits):
        for r in [r for r in pk if r["bits"] == b and b is not None] + floats:
            style = ":" if r["bits"] is None else "-"
            label = r["method"] + (" (float)" if r["bits"] is None and "float" not in r["method"] else "")
            # tie-aware precision: with compact codes thousands of items share the top distances, and
            # the plain curve would show the database order inside those ties, not the method
            prec = r["p_at_k"].get("precision_tie_aware", r["p_at_k"]["precision"])
            ax.plot(r["p_at_k"]["k"], prec, style, marker=_marker(colors, r["method"]), ms=3, color=colors[r["method"]],
                    label=label)
        ax.set_xscale("log")
        ax.set_title("float features" if b is None else f"{b} bits")
        ax.set_xlabel("K (log scale)")
        ax.set_ylabel("precision@K")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
    _legend(axes[-1], len(ax.get_legend_handles_labels()[0]))
    _save(fig, path)
    return True


def _plot_map_vs_bits(results: list[dict[str, Any]], path: Path, colors: dict[str, Any]) -> bool:
    plt = require("matplotlib.pyplot", "the report's plots")

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    bits = _bit_lengths(results)
    for m in _methods(results):
        rs = sorted((r for r in results if r["method"] == m and r["bits"] is not None), key=lambda r: r["bits"])
        if rs:
            x = [r["bits"] for r in rs]
            ax.plot(x, [r["map"] for r in rs], "-", marker=_marker(colors, m), ms=4, color=colors[m], label=m)
            ax.plot(x, [r["tie_aware_map"] for r in rs], "--", color=colors[m], alpha=0.7)  # same method: no legend entry
        for r in (r for r in results if r["method"] == m and r["bits"] is None):
            ax.axhline(r["map"], ls=":", color=colors[m], label=m if "float" in m else f"{m} (float features)")
    ax.set_xticks(bits or [0])
    ax.set_xlabel("code length (bits)")
    k = sorted({r.get("topk") for r in results if r.get("topk") is not None})
    ax.set_ylabel("mAP@" + (",".join(str(v) for v in k) if k else "all"))
    top = max([r["map"] for r in results] + [r["tie_aware_map"] for r in results])
    ax.set_ylim(0, min(1.0, max(0.05, top * 1.15)))  # from 0, so gaps are not exaggerated
    ax.set_title("mAP against code length")
    ax.grid(alpha=0.3)
    _legend(ax, len(ax.get_legend_handles_labels()[0]))
    _save(fig, path)
    return True


# ------------------------------------------------------------------------------ entry point


def write_report(results: Sequence[dict[str, Any]], out_dir: str | Path, config: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots into ``out_dir``; return their paths."""
    matplotlib = require("matplotlib", "the report's plots")

    matplotlib.use("Agg", force=False)
    res = _check_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    if hasattr(cfg.get("protocol"), "to_dict"):
        cfg["protocol"] = cfg["protocol"].to_dict()
    cfg.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    colors = _colors(_methods(res))
    paths: dict[str, Path] = {}
    pngs: dict[str, str] = {}
    for key, fn in (("pr_curves", _plot_pr), ("p_at_k", _plot_pk), ("map_vs_bits", _plot_map_vs_bits)):
        p = out / f"{key}.png"
        if fn(res, p, colors):
            paths[key] = p
            pngs[key] = p.name
    from deephash import __version__

    doc = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "deephash_version": __version__,
        "config": cfg,
        "results": res,
    }
    paths["json"] = out / "report.json"
    atomic_write_json(paths["json"], doc)
    paths["markdown"] = out / "report.md"
    atomic_write_bytes(paths["markdown"], _markdown(res, cfg, pngs).encode())
    return paths
