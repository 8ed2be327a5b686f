"""``deephash bench ray-encode``: encoding real images in one process vs on a local Ray cluster, one run.

Both sides encode the same images (an evenly spaced sample of the archive) with the same model,
cold: the local side recomputes its features (no feature cache), the Ray side starts its own
local cluster of ``workers`` CPUs and writes its shards to a fresh run folder. Reported:

- images/s of each side — the Ray side end to end (cluster start-up and shutdown included) and
  encoding only (first task submitted → last shard written);
- Ray's overhead: start-up (``ray.init``), shutdown, and per shard the worker time not spent
  encoding, ``(encode wall × workers − Σ in-task encode time) / shards`` (task dispatch, worker
  process start, model load, result transfer, the driver's shard write, idle tails);
- whether the two results are identical (codes, features, ids, failed images).

With ``repeats`` > 1 the two sides alternate (local, ray, local, ray, ...; each ray run on a fresh
cluster) and the figures are medians; every repeat's figures are in the JSON's ``runs``.

The model is the one given, or a 64-bit ITQ fitted on 1,000 of the sampled images (outside the
timed part; its seed is recorded).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.utils import atomic_write_json


def _cpu() -> dict[str, Any]:
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": name, "cores": os.cpu_count(), "isa": isa, "load_avg_1m_at_start": round(load[0], 2)}


def _fit_model(archive, image_size: int, out_dir: Path, seed: int) -> Path:
    from deephash.backbones import create_backbone
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    bb = create_backbone("efficientnet-lite0", image_size=image_size)
    pos = np.linspace(0, len(archive) - 1, min(1000, len(archive))).astype(np.int64)
    fs = extract_features(archive.subset(np.unique(pos)), bb, progress=False, use_cache=False)
    h = create_hasher("itq", 64, seed=seed)
    h.fit(fs.features)
    return Path(h.save(out_dir / "itq-64.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict()))


def _one_run(loc, ray_enc, local_s: float, ray_s: float, n: int, workers: int) -> dict[str, Any]:
    """One repeat's figures (see the module's docstring for what each means)."""
    st = ray_enc.stats
    task_s = float(sum(st["task_s"]))
    wall = st["encode_wall_s"] or float("nan")
    identical = (np.array_equal(loc.ids, ray_enc.ids) and np.array_equal(loc.codes, ray_enc.codes)
                 and np.array_equal(loc.features, ray_enc.features) and loc.failed == ray_enc.failed)
    return {"local_s": round(local_s, 2), "local_images_per_s": round(n / local_s, 1), "ray_s": round(ray_s, 2),
            "ray_images_per_s": round(n / ray_s, 1), "encode_wall_s": round(wall, 2),
            "ray_images_per_s_encoding_only": round(n / wall, 1), "startup_s": round(st["startup_s"], 2),
            "shutdown_s": round(st.get("shutdown_s", 0.0), 2), "task_encode_s_sum": round(task_s, 2),
            "overhead_per_shard_s": round((wall * workers - task_s) / max(1, st["computed_shards"]), 3),
            "shard_task_s_median": round(float(np.median(st["task_s"])), 3) if st["task_s"] else 0.0,
            "speedup_end_to_end": round(local_s / ray_s, 3), "speedup_encoding_only": round(local_s / wall, 3),
            "identical": bool(identical)}


def run_ray_encode_bench(dataset: str = "cifar10", n_images: int = 20_000, *, workers: int = 2, shard_size: int = 1024,
                         batch_size: int = 64, image_size: int = 128, model: str | None = None, seed: int = 0,
                         repeats: int = 1, json_path: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Encode ``n_images`` of ``dataset`` (``cifar10`` or an archive path) with the local engine, then
    with the ray engine (a local cluster of ``workers``); returns (and writes) the report."""
    from deephash.data import load_cifar10, open_archive
    from deephash.engines import create_engine
    from deephash.model import HashModel

    if n_images < 1 or repeats < 1:
        raise ConfigError(f"n_images and repeats must be at least 1; got {n_images} and {repeats}")
    machine = _cpu()
    full = load_cifar10() if dataset == "cifar10" else open_archive(dataset)  # unpacked once into the real cache
    n = min(n_images, len(full))
    archive = full.subset(np.unique(np.linspace(0, len(full) - 1, n).astype(np.int64)))
    saved_cache = os.environ.get("DEEPHASH_CACHE")
    with tempfile.TemporaryDirectory(prefix="deephash-ray-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["DEEPHASH_CACHE"] = str(tmp / "cache")  # cold: no feature cache, no earlier shards
        try:
            ckpt = Path(model) if model else _fit_model(archive, image_size, tmp, seed)
            m = HashModel.load(ckpt)
            runs = []
            for rep in range(repeats):  # interleaved: local, ray, local, ray, ...
                t0 = time.perf_counter()
                loc = create_engine("local", batch_size=batch_size, use_cache=False).encode(archive, ckpt, m,
                                                                                            progress=progress)
                local_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                ray_enc = create_engine("ray", workers=workers, shard_size=shard_size, batch_size=batch_size,
                                        run_dir=tmp / "runs" / str(rep)).encode(archive, ckpt, m, progress=progress)
                ray_s = time.perf_counter() - t0
                runs.append(_one_run(loc, ray_enc, local_s, ray_s, n, workers))
        finally:
            if saved_cache is None:
                os.environ.pop("DEEPHASH_CACHE", None)
            else:
                os.environ["DEEPHASH_CACHE"] = saved_cache
    med = {k: round(float(np.median([r[k] for r in runs])), 3) for k in runs[0] if k != "identical"}
    st = ray_enc.stats
    report = {
        "benchmark": "ray-encode",
        "dataset": dataset, "images": n, "encoded": int(len(loc)), "failed": len(loc.failed),
        "model": str(ckpt) if model else f"itq-64 fitted on 1,000 of the images (seed {seed})",
        "backbone": m.backbone.describe(), "image_size": m.backbone.preprocessing.size, "batch_size": batch_size,
        "workers": workers, "shard_size": shard_size, "shards": st["shards"], "machine": machine,
        "repeats": repeats, "figures": "medians over the repeats (each repeat: local, then ray on a fresh cluster)",
        "local": {"seconds": med["local_s"], "images_per_s": med["local_images_per_s"],
                  "threads": int(os.environ.get("DEEPHASH_THREADS", 0) or os.cpu_count() or 1)},
        "ray": {"seconds": med["ray_s"], "images_per_s": med["ray_images_per_s"], "encode_wall_s": med["encode_wall_s"],
                "images_per_s_encoding_only": med["ray_images_per_s_encoding_only"], "startup_s": med["startup_s"],
                "shutdown_s": med["shutdown_s"], "overhead_per_shard_s": med["overhead_per_shard_s"],
                "shard_task_s_median": med["shard_task_s_median"], "worker_processes": len(st["shard_hosts"]),
                "speedup_end_to_end": med["speedup_end_to_end"], "speedup_encoding_only": med["speedup_encoding_only"]},
        "identical": all(r["identical"] for r in runs),
        "runs": runs,
        "command": (f"deephash bench ray-encode --n {n_images} --workers {workers} --shard-size {shard_size} "
                    f"--batch-size {batch_size} --image-size {image_size} --repeats {repeats}"),
    }
    if json_path:
        atomic_write_json(json_path, report)
    return report


def format_ray_encode_markdown(r: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per side) plus Ray's overhead."""
    lo, ra = r["local"], r["ray"]
    lines = [
        f"{r['images']:,} images ({r['dataset']}, {r['image_size']} px, {r['backbone']['name']}), batch {r['batch_size']}; "
        f"CPU: {r['machine']['cpu']} ({r['machine']['cores']} cores, {'/'.join(r['machine']['isa']) or 'no AVX2'}), "
        f"load {r['machine']['load_avg_1m_at_start']} at start; medians of {r['repeats']} interleaved repeat(s)",
        "",
        "| engine | seconds | images/s | vs local |",
        "|---|---:|---:|---:|",
        f"| local (1 process, {lo['threads']} threads) | {lo['seconds']:.1f} | {lo['images_per_s']:.1f} | 1.00 |",
        f"| ray, {r['workers']} workers, end to end | {ra['seconds']:.1f} | {ra['images_per_s']:.1f} | {ra['speedup_end_to_end']:.2f} |",
        f"| ray, encoding only | {ra['encode_wall_s']:.1f} | {ra['images_per_s_encoding_only']:.1f} | {ra['speedup_encoding_only']:.2f} |",
        "",
        f"Ray overhead: start-up {ra['startup_s']:.1f} s, shutdown {ra['shutdown_s']:.1f} s, "
        f"{ra['overhead_per_shard_s']:.2f} s per shard ({r['shards']} shards of {r['shard_size']}; median shard "
        f"encode {ra['shard_task_s_median']} s on {ra['worker_processes']} worker processes). "
        f"Results identical to local: {'yes' if r['identical'] else 'NO'}.",
    ]
    return "\n".join(lines)
