"""The Ray engine: an archive's shards encoded by Ray tasks on a cluster (or a local one it starts).

Each shard is one Ray task that runs :func:`deephash.engines.shards.encode_shard` (decode →
backbone → hash, in batches, through the model's own batch path) on a worker; this process writes
each finished shard to the run folder as it arrives, and assembles them in archive order at the
end. Ray retries a task whose worker died (``max_retries``), so a shard is redone, never half
kept; shards already in the run folder (from a killed run) are not computed again. Ray is
imported here only, when an engine is built: ``pip install "deephash[ray]"``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from deephash.engines.base import Engine, EncodedArchive, Progress, check_positions, register_engine, report_progress
from deephash.engines.shards import ShardStore, assemble, encode_shard, model_from_bytes, plan_shards
from deephash.errors import ConfigError, DeepHashError, EngineError, EngineUnavailableError


#: option -> (smallest value, what it is), checked in one place
_LIMITS = {"workers": (1, "worker processes"), "shard_size": (1, "images per shard"),
           "batch_size": (1, "images per backbone call"), "max_retries": (0, "retries of a shard whose worker died"),
           "threads_per_worker": (1, "backbone threads per worker")}


def _ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    from deephash.optional import require

    return require("ray", "the ray engine", error=EngineUnavailableError)


def _encode_shard_task(model_bytes: bytes, digest: str, root: str, paths: list[str], positions: np.ndarray,
                       batch_size: int, threads: int):
    """What one Ray task runs on a worker: the model (loaded once per worker process), then one shard."""
    return encode_shard(model_from_bytes(model_bytes, digest, threads=threads), root, paths, positions,
                        batch_size=batch_size)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A ``[ray://]HOST:PORT`` address must accept a TCP connection (``ray.init`` would retry for minutes);
    ``auto`` and other forms are left to Ray."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} (expected a Ray head node: "
                          "ray://HOST:10001 for Ray Client, or HOST:6379 for its GCS)") from None


@register_engine("ray")
class RayEngine(Engine):
    """Encodes shards of ``shard_size`` images as Ray tasks, ``workers`` at a time.

    ``address``: a running cluster (``ray://head:10001``, or ``auto``); without one, a local Ray
    cluster of ``workers`` CPUs is started for the run and stopped after it (if this process is
    already connected to Ray, that connection is used). ``run_dir``: where run folders go
    (default: the cache's ``encode-runs``). Every worker must see the archive at the same path."""

    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int = 2, shard_size: int = 1024, batch_size: int = 64,
                 max_retries: int = 3, threads_per_worker: int = 1, run_dir: str | os.PathLike | None = None) -> None:
        vals = {"workers": workers, "shard_size": shard_size, "batch_size": batch_size, "max_retries": max_retries,
                "threads_per_worker": threads_per_worker}
        for k, v in vals.items():
            lo, what = _LIMITS[k]
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{k} ({what}) must be an integer of at least {lo}; got {v!r}")
        _ray()  # refuse now, before any work, when Ray is missing
        self.address = address or None
        self.workers, self.shard_size, self.batch_size = int(workers), int(shard_size), int(batch_size)
        self.max_retries, self.threads_per_worker = int(max_retries), int(threads_per_worker)
        self.run_dir = run_dir

    # ------------------------------------------------------------------ cluster
    def _connect(self, ray) -> bool:
        """Connect to (or start) a cluster; True when this call started the connection (so ends it)."""
        if ray.is_initialized():
            return False
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        if self.address:
            check_reachable(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.workers, **kw)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise EngineError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return True

    # ------------------------------------------------------------------ encode
    def encode(self, archive, checkpoint: str | os.PathLike, model, *, positions: np.ndarray | None = None,
               progress: Progress = True) -> EncodedArchive:
        from tqdm import tqdm

        ray = _ray()
        everything = positions is None
        positions = check_positions(positions, len(archive))
        shards = plan_shards(len(positions), self.shard_size)  # [a, b) of ``positions``
        store = ShardStore.for_run(archive, model, self.shard_size, self.run_dir,
                                   positions=None if everything else positions)
        todo = [i for i in range(len(shards)) if not store.has(i)]
        reused = len(shards) - len(todo)
        left = set(todo)
        done_images = sum(b - a for i, (a, b) in enumerate(shards) if i not in left)
        stats = {"engine": self.name, "images": len(positions), "shards": len(shards), "shard_size": self.shard_size,
                 "reused_shards": reused, "computed_shards": 0, "workers": self.workers, "run_dir": str(store.folder),
                 "startup_s": 0.0, "encode_wall_s": 0.0, "task_s": [], "shard_hosts": {}}
        started, bar = False, None
        try:
            if todo:
                t0 = time.perf_counter()
                started = self._connect(ray)
                stats["startup_s"] = time.perf_counter() - t0
                stats["address"] = self.address or ("existing connection" if not started else "local cluster started")
                bar = tqdm(total=len(positions), initial=done_images, unit="img", desc=f"ray: {len(todo)} shard(s)",
                           disable=progress is not True, file=sys.stderr, dynamic_ncols=True,
                           mininterval=0.5 if sys.stderr.isatty() else 10.0)
                self._run(ray, archive, checkpoint, model, positions, shards, todo, store, stats, bar, progress,
                          done_images)
        finally:
            if bar is not None:
                bar.close()
            if started:
                t1 = time.perf_counter()
                ray.shutdown()
                stats["shutdown_s"] = time.perf_counter() - t1
        codes, feats, ids, failed = assemble(store, len(shards), archive)
        return EncodedArchive(codes, feats, ids, failed, stats)

    def _run(self, ray, archive, checkpoint, model, positions, shards, todo, store, stats, bar, progress,
             done_images) -> None:
        task = ray.remote(num_cpus=self.threads_per_worker, max_retries=self.max_retries)(_encode_shard_task)
        t0 = time.perf_counter()
        data = Path(checkpoint).read_bytes()
        digest = model.digest or hashlib.sha256(data).hexdigest()[:16]  # keys the workers' loaded-model cache
        blob = ray.put(data)
        root = str(archive.root.resolve())
        pending = {}
        for i in todo:
            a, b = shards[i]
            pending[task.remote(blob, digest, root, [archive.paths[j] for j in positions[a:b]], positions[a:b],
                                self.batch_size, self.threads_per_worker)] = i
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    r = self._result(ray, ref, i)
                    store.write(i, r)
                    stats["computed_shards"] += 1
                    stats["task_s"].append(round(r.seconds, 4))
                    stats["shard_hosts"][f"{r.host}:{r.pid}"] = stats["shard_hosts"].get(f"{r.host}:{r.pid}", 0) + 1
                    a, b = shards[i]
                    done_images += b - a
                    bar.update(b - a)
                    report_progress(progress, done_images, len(positions))
        except BaseException:
            for ref in pending:  # a failed or interrupted run: stop the shards still queued or running
                ray.cancel(ref, force=True)
            raise
        finally:
            stats["encode_wall_s"] = time.perf_counter() - t0

    def _result(self, ray, ref, i: int):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, DeepHashError):
                raise type(cause)(str(cause)) from None
            raise EngineError(f"shard {i} failed on a Ray worker: {type(cause).__name__ if cause else 'error'}: "
                              f"{str(cause or e).splitlines()[0]}") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as e:
            raise EngineError(f"shard {i}: its Ray worker died {self.max_retries + 1} time(s) ({type(e).__name__}); "
                              "the shards written so far are kept: run again to resume") from None
