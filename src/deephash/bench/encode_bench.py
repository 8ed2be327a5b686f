"""Encoder benchmark: the streaming encoder against the encoder deephash had before it, in one run.

Images per second (median of ``repeats``, the encoders interleaved) on two sets:

- ``cifar``: CIFAR-10 test JPEGs (32x32, ~1.5 KB), ``n_small`` of them;
- ``12mp``: 4000x3000 JPEGs at quality 90 (~2 MB) that the bench makes itself from CIFAR-10 test
  images (bicubic up-scaling plus a little seeded Gaussian noise, so they compress like photos),
  written once to ``$DEEPHASH_CACHE/bench/encode-12mp-v1``; anyone regenerates the same files.

Rows: ``old`` (the encoder as it was: full decode in 2 threads, then the backbone, one batch after
the other, on an ONNX Runtime session whose threads spin while idle, as they did; kept here only to
be measured), ``new`` (:class:`deephash.encoding.StreamEncoder` as deephash runs it: draft decoding,
decoder processes where the measured costs call for them, overlapped with the backbone),
``old-nospin`` (CIFAR set: the old encoder on the new session, whose threads do not spin: what of
the difference is the session setting), ``new-workers`` (CIFAR set: the streaming encoder with a
decoder process per core forced, as it was before the choice was measured), ``new-full`` (12-MP set: without draft decoding), ``new-int8`` (the int8
backbone), ``backbone-only`` (CIFAR set: the backbone alone on the images decoded beforehand, in
batches of 64: the limit for small files) and ``decode-only`` (the decoder processes alone, no
backbone: the limit for large files). Each row also gets the CPU time it used per image (this
process and its decoder processes), which a loaded machine disturbs less than the wall clock. Fidelity (``--quality``): cosine between
features of draft-decoded and fully decoded 12-MP images, and mAP of a CIFAR subset up-scaled
to 1024x768, draft against full decoding, int8 against float32.
"""
from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.bench.machine import cpu_isa, cpu_name, machine_facts, write_result
from deephash.utils import cache_dir

LARGE_SIZE = (4000, 3000)
LARGE_QUALITY = 90
LARGE_NOISE = 4.5  # std of the Gaussian noise added after up-scaling, in grey levels


# ----------------------------------------------------------------------------- the image sets
def large_jpegs(n: int, source_paths: Sequence[Path], *, seed: int = 0, folder: Path | None = None,
                size: tuple[int, int] = LARGE_SIZE) -> list[Path]:
    """``n`` deterministic 12-MP JPEGs made from ``source_paths`` (cached: made once, reused)."""
    from PIL import Image

    folder = folder or cache_dir() / "bench" / f"encode-12mp-v1-{size[0]}x{size[1]}-q{LARGE_QUALITY}-n{LARGE_NOISE}-s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{i:04d}.jpg"
        if not p.is_file():
            rng = np.random.default_rng([seed, i])
            with Image.open(source_paths[i % len(source_paths)]) as im:
                big = np.asarray(im.convert("RGB").resize(size, Image.BICUBIC), np.float32)
            big += rng.normal(0, LARGE_NOISE, big.shape).astype(np.float32)
            tmp = p.with_suffix(".tmp.jpg")
            Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(tmp, quality=LARGE_QUALITY)
            os.replace(tmp, p)
        out.append(p)
    return out


# ----------------------------------------------------------------------------- the encoders
def old_encode(paths: Sequence[Path], backbone, batch_size: int = 64, n_readers: int = 2) -> int:
    """The encoder before the streaming one (deephash.features.extract until this bench was added):
    full decode + resize in ``n_readers`` threads, then the backbone, batch after batch."""
    from deephash.data.images import load_rgb
    from deephash.errors import DataError

    size = backbone.preprocessing.size

    def one(p):
        try:
            return load_rgb(p, size)
        except (DataError, OSError):
            return None

    done = 0
    with ThreadPoolExecutor(max_workers=n_readers) as pool:
        for s in range(0, len(paths), batch_size):
            imgs = [im for im in pool.map(one, paths[s : s + batch_size]) if im is not None]
            if imgs:
                backbone.embed(np.stack(imgs))
                done += len(imgs)
    return done


def spinning_copy(backbone):
    """``backbone`` on an ONNX Runtime session whose intra-op threads spin while idle (as every session did
    before ``DEEPHASH_ORT_SPINNING``): the old encoder's backbone. Backbones not run by ONNX Runtime come back as they are."""
    import copy

    from deephash.backbones._onnx_runtime import OrtRunner

    if not isinstance(getattr(backbone, "_runner", None), OrtRunner):
        return backbone
    out = copy.copy(backbone)
    out._runner = OrtRunner(backbone.onnx_path(), getattr(backbone, "n_threads", None), spinning=True)
    return out


def new_encode(paths: Sequence[Path], backbone, *, draft: bool = True, batch_size: int = 64, workers: int | None = None,
               info: dict[str, Any] | None = None) -> int:
    """The streaming encoder as deephash runs it (``workers=None``: chosen from measured costs); ``info`` gets
    the number of decoder processes it ran."""
    from deephash.encoding import StreamEncoder

    enc = StreamEncoder(backbone, batch_size=batch_size, workers=workers, draft=draft)
    done, used = 0, 0
    for b in enc.stream(list(paths)):
        done += len(b.positions)
        used = max(used, b.workers)
    if info is not None:
        info["workers"] = used
    return done


def backbone_only(images: np.ndarray, backbone, batch_size: int = 64) -> int:
    """The backbone alone on images decoded beforehand: the limit of any encoder of small files."""
    for s in range(0, len(images), batch_size):
        backbone.embed(images[s : s + batch_size])
    return len(images)


def decode_only(paths: Sequence[Path], size: int, *, workers: int | None = None) -> int:
    """The decoder stage alone (draft decoding in the encoder's worker processes): the encoder's limit."""
    from deephash.encoding.decode import DecodeSpec, decode_chunk
    from deephash.encoding.stream import _process_pool

    spec = DecodeSpec(size, True)
    step = max(1, min(32, len(paths) // (4 * (workers or os.cpu_count() or 1)) or 1))
    with _process_pool(workers or os.cpu_count() or 1) as pool:
        futs = [pool.submit(decode_chunk, list(paths[s : s + step]), spec) for s in range(0, len(paths), step)]
        return sum(int(f.result().ok.sum()) for f in futs)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the decoders), user + system."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _rates(jobs: dict[str, Callable[[], int]], n: int, repeats: int, say) -> dict[str, dict[str, Any]]:
    """Images/s and CPU ms per image of each job, ``repeats`` interleaved runs; medians."""
    runs: dict[str, list[float]] = {k: [] for k in jobs}
    cpu: dict[str, list[float]] = {k: [] for k in jobs}
    for r in range(repeats):
        for name, fn in jobs.items():
            c = cpu_seconds()
            t = time.perf_counter()
            got = fn()
            dt = time.perf_counter() - t
            if got != n:
                raise AssertionError(f"{name} encoded {got} of {n} images")
            runs[name].append(n / dt)
            cpu[name].append(1000 * (cpu_seconds() - c) / n)
            say(f"  repeat {r + 1}/{repeats} {name:<13} {n / dt:8.1f} img/s  {cpu[name][-1]:6.2f} CPU ms/img  "
                f"load {os.getloadavg()[0]:.1f}")
    return {k: {"median": statistics.median(v), "runs": v, "cpu_ms_per_image": statistics.median(cpu[k]),
                "cpu_ms_runs": cpu[k]} for k, v in runs.items()}


# ----------------------------------------------------------------------------- fidelity
def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _map_of(feats: np.ndarray, labels: np.ndarray, n_query: int, bits: int, seed: int) -> dict[str, float]:
    """mAP (all database items) of cosine kNN and of 64-bit ITQ codes: queries are the first ``n_query`` rows."""
    from deephash.eval.metrics import mean_average_precision, relevance_matrix
    from deephash.hashers import create_hasher

    q, db, yq, ydb = feats[:n_query], feats[n_query:], labels[:n_query], labels[n_query:]
    rel = relevance_matrix(yq, ydb)
    qn, dn = q / np.linalg.norm(q, axis=1, keepdims=True), db / np.linalg.norm(db, axis=1, keepdims=True)
    out = {"cosine_map": mean_average_precision(-qn @ dn.T, rel)}
    h = create_hasher("itq", bits, seed=seed).fit(db)
    cq, cd = np.unpackbits(h.encode(q), axis=1), np.unpackbits(h.encode(db), axis=1)
    ham = (cq[:, None, :] != cd[None, :, :]).sum(-1)
    out[f"itq{bits}_map"] = mean_average_precision(ham, rel)
    return out


def medium_jpegs(paths: Sequence[Path], *, size: tuple[int, int] = (1024, 768), seed: int = 0) -> list[Path]:
    """CIFAR images up-scaled to ``size`` (draft decoding applies at 1/4 for a 128-px input)."""
    return large_jpegs(len(paths), paths, seed=seed, size=size,
                       folder=cache_dir() / "bench" / f"encode-medium-v1-{size[0]}x{size[1]}-q{LARGE_QUALITY}-s{seed}-n{len(paths)}")


def fidelity(large: Sequence[Path], archive, backbone, int8, *, n_per_class: int, n_query_per_class: int, seed: int,
             say) -> dict[str, Any]:
    from deephash.encoding import encode_images

    out: dict[str, Any] = {}
    full = encode_images(list(large), backbone, draft=False).features
    draft = encode_images(list(large), backbone, draft=True).features
    c = _cos(full, draft)
    out["draft_vs_full_cosine_12mp"] = {"mean": float(c.mean()), "min": float(c.min()), "n": len(c)}
    say(f"draft vs full decoding, 12-MP: feature cosine mean {c.mean():.5f}, min {c.min():.5f} ({len(c)} images)")
    # a labelled subset, up-scaled: queries first, then the database, class-balanced
    test = archive.split_indices("test")
    rng = np.random.default_rng(seed)
    qi, di = [], []
    for cls in range(len(archive.class_names)):
        idx = rng.permutation(test[archive.labels[test] == cls])
        qi += list(idx[:n_query_per_class])
        di += list(idx[n_query_per_class : n_query_per_class + n_per_class])
    rows = np.array(qi + di)
    say(f"making {len(rows)} up-scaled 1024x768 JPEGs (once)...")
    files = medium_jpegs([archive.abspath(int(i)) for i in rows], seed=seed)
    labels = archive.labels[rows]
    feats = {"full": encode_images(files, backbone, draft=False).features,
             "draft": encode_images(files, backbone, draft=True).features}
    if int8 is not None:
        feats["draft+int8"] = encode_images(files, int8, draft=True).features
    nq = len(qi)
    maps = {k: _map_of(f, labels, nq, 64, seed) for k, f in feats.items()}
    cos = {k: float(_cos(feats["full"], f).mean()) for k, f in feats.items() if k != "full"}
    out["upscaled_cifar"] = {"n_query": nq, "n_database": len(di), "size": [1024, 768], "map": maps,
                             "cosine_to_full": cos}
    for k, m in maps.items():
        say(f"up-scaled CIFAR subset ({nq} queries, {len(di)} database), {k:<11}: "
            + ", ".join(f"{a} {b:.4f}" for a, b in m.items()) + (f", cosine to full {cos[k]:.5f}" if k in cos else ""))
    return out


# ----------------------------------------------------------------------------- the bench
def run_encode_bench(*, n_small: int = 3000, n_large: int = 60, repeats: int = 3, image_size: int = 128,
                     backbone_name: str = "efficientnet-lite0", int8: bool = True, quality: bool = False,
                     seed: int = 0, json_path: str | os.PathLike | None = None, data: str | None = None,
                     verbose: bool = True) -> dict[str, Any]:
    """Run the benchmark, print the table, write JSON (``json_path``) and return the dict."""
    from deephash.backbones import create_backbone
    from deephash.data import load_cifar10
    from deephash.encoding.decode import DecodeSpec, decode_chunk
    from deephash.encoding.int8 import int8_backbone

    say = print if verbose else (lambda *a, **kw: None)
    archive = load_cifar10(data)
    test = archive.split_indices("test")
    small = [archive.abspath(int(i)) for i in test[:n_small]]
    t = time.perf_counter()
    large = large_jpegs(n_large, [archive.abspath(int(i)) for i in test])
    mb = sum(p.stat().st_size for p in large) / len(large) / 1e6
    say(f"# deephash encode benchmark: {backbone_name} at {image_size} px, {os.cpu_count()} cores; CPU: {cpu_name()}; "
        f"ISA: {cpu_isa()}")
    say(f"sets: {len(small)} CIFAR-10 test JPEGs (32x32); {len(large)} 12-MP JPEGs ({LARGE_SIZE[0]}x{LARGE_SIZE[1]}, "
        f"q{LARGE_QUALITY}, {mb:.2f} MB each; ready in {time.perf_counter() - t:.1f} s)")
    bb = create_backbone(backbone_name, image_size=image_size)
    bb.embed(np.zeros((2, image_size, image_size, 3), np.uint8))  # export/load the ONNX model outside the timings
    bb_old = spinning_copy(bb)
    bb_old.embed(np.zeros((2, image_size, image_size, 3), np.uint8))
    q8 = None
    if int8:
        t = time.perf_counter()
        q8 = int8_backbone(bb, [archive.abspath(int(i)) for i in archive.split_indices("train")])
        q8.embed(np.zeros((2, image_size, image_size, 3), np.uint8))
        say(f"int8 backbone ready in {time.perf_counter() - t:.1f} s ({q8.int8_path.name})")
    result: dict[str, Any] = {"machine": machine_facts(),
                              "backbone": backbone_name, "image_size": image_size, "repeats": repeats, "seed": seed,
                              "sets": {"cifar": {"n": len(small)}, "12mp": {"n": len(large), "mb_per_file": mb}}}
    decoded = decode_chunk(small, DecodeSpec(image_size, True)).images
    for set_name, paths in (("cifar", small), ("12mp", large)):
        info: dict[str, Any] = {}
        jobs: dict[str, Callable[[], int]] = {
            "old": lambda p=paths: old_encode(p, bb_old),
            "new": lambda p=paths, i=info: new_encode(p, bb, info=i),
        }
        if set_name == "cifar":  # draft decoding never applies to 32-px files: no "new-full" here
            jobs["old-nospin"] = lambda p=paths: old_encode(p, bb)
            jobs["new-workers"] = lambda p=paths: new_encode(p, bb, workers=os.cpu_count())
        else:
            jobs["new-full"] = lambda p=paths: new_encode(p, bb, draft=False)
        if q8 is not None:
            jobs["new-int8"] = lambda p=paths: new_encode(p, q8)
        if set_name == "cifar":
            jobs["backbone-only"] = lambda: backbone_only(decoded, bb)
        jobs["decode-only"] = lambda p=paths: decode_only(p, image_size)
        say(f"## {set_name}")
        rates = _rates(jobs, len(paths), repeats, say)
        result["sets"][set_name]["rates"] = rates
        result["sets"][set_name]["new_decoder_processes"] = info.get("workers")
    if quality:
        result["fidelity"] = fidelity(large, archive, bb, q8, n_per_class=40, n_query_per_class=10, seed=seed, say=say)
    say("")
    say(format_encode_table(result))
    write_result(json_path, result, say)
    return result


def format_encode_table(result: dict[str, Any]) -> str:
    """The Markdown table: images/s (median) and CPU ms per image per encoder and set, and the ratios to the
    old encoder and to the set's limit (``backbone-only`` where measured, else ``decode-only``)."""
    sets = result["sets"]
    names = list(dict.fromkeys(k for s in sets.values() for k in s.get("rates", {})))
    limit = {k: ("backbone-only" if "backbone-only" in s.get("rates", {}) else "decode-only") for k, s in sets.items()}
    lines = [f"ISA: {result['machine']['isa']}; {result['machine']['cores']} cores; {result['backbone']} at "
             f"{result['image_size']} px; medians of {result['repeats']} interleaved runs",
             "",
             "| encoder | " + " | ".join(f"{s} img/s | {s} vs old | {s} vs {limit[s]} | {s} CPU ms/img" for s in sets) + " |",
             "|---|" + "---:|---:|---:|---:|" * len(sets)]
    for n in names:
        cells = []
        for k, s in sets.items():
            r = s.get("rates", {})
            if n not in r:
                cells += ["–"] * 4
                continue
            v = r[n]["median"]
            cells += [f"{v:.1f}", f"{v / r['old']['median']:.2f}", f"{v / r[limit[k]]['median']:.2f}",
                      f"{r[n].get('cpu_ms_per_image', float('nan')):.2f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
