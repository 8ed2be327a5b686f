"""The streaming encoder: reader -> decoder (worker processes) -> backbone (batches) -> hasher -> writer.

The one path by which deephash turns images into features and codes: the feature cache
(:func:`deephash.features.extract_features`, hence ``index``, ``train``, ``evaluate``, ``demo``),
:meth:`deephash.model.HashModel.encode_images` and :meth:`deephash.model.HashModel.encode_batches` (hence
``encode``, ``search`` and the service) all run it.

- *reader*: the caller's sequence of files or bytes, cut into batches of ``batch_size`` positions;
  each batch is cut into decode chunks of about ``CHUNK_BYTES`` of compressed data, so that two
  workers share a few 12-MP files as evenly as thousands of thumbnails.
- *decoder*: :func:`deephash.encoding.decode.decode_chunk` in ``workers`` processes, ``prefetch``
  batches ahead of the backbone, so decoding overlaps inference (``workers=0``: inline, no processes).
  By default the number is chosen from measured costs (:func:`choose_workers`): the first chunk is
  decoded inline and embedded on its own (timed; its features are kept, so nothing is computed
  twice, and where a chunk is a whole batch nothing changes at all); worker processes start only where
  decoding an image costs a good fraction of embedding it (large photos). For CIFAR-size images
  decoding is ~15 % of the backbone's time and shipping the decoded arrays between processes,
  plus the decoders competing with the backbone's threads for the cores, cost more than it saved.
- *backbone* and *hasher*: in the calling process, one call per batch.
- *writer*: the caller, who gets one :class:`EncodedBatch` per batch, in source order.

Results do not depend on ``workers``, ``prefetch`` or the chunking: batches are the same position
ranges whatever runs them.
"""
from __future__ import annotations

import os
import signal
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from deephash.encoding.decode import DecodedChunk, DecodeSpec, decode_chunk, source_bytes
from deephash.errors import ConfigError, DataError
from deephash.utils import Timer

#: compressed bytes per decode task (a 12-MP JPEG is one task; ~600 CIFAR JPEGs would be, capped at CHUNK_MAX)
CHUNK_BYTES = 1 << 20
CHUNK_MAX = 32
#: decoder processes start only if decoding an image takes at least this fraction of the backbone's time for it
WORKERS_MIN_DECODE_RATIO = 0.25


def decode_size_of(backbone) -> int:
    """The square size images are decoded to for ``backbone`` (a fine-tuned trunk's training image size, else its input)."""
    return int(getattr(backbone, "decode_size", None) or backbone.preprocessing.size)


def env_workers() -> int | None:
    """``DEEPHASH_DECODE_WORKERS`` if set (the number of decoder processes), else None (choose from measured costs)."""
    env = os.environ.get("DEEPHASH_DECODE_WORKERS")
    if env is None:
        return None
    try:
        return max(0, int(env))
    except ValueError:
        raise ConfigError(f"DEEPHASH_DECODE_WORKERS must be a whole number; got {env!r}") from None


def choose_workers(decode_s: float, backbone_s: float, cores: int | None = None) -> int:
    """Decoder processes for images that take ``decode_s`` seconds each to decode inline and ``backbone_s``
    to embed: one per core (at most 8) when decoding costs at least ``WORKERS_MIN_DECODE_RATIO`` of the
    backbone, else 0 (inline). Workers can only hide the decoding, and they cost the transfer of every
    decoded image and a share of the cores the backbone's threads run on; on one core they hide nothing."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    if cores < 2 or decode_s < WORKERS_MIN_DECODE_RATIO * backbone_s:
        return 0
    return min(8, cores)


@dataclass
class EncodedBatch:
    """Sources ``start..stop-1``: ``features[j]``/``codes[j]`` belong to source ``positions[j]``; ``failed``
    lists ``(position, reason)`` of the ones that did not decode."""

    start: int
    stop: int
    positions: np.ndarray
    features: np.ndarray
    codes: np.ndarray | None
    failed: list[tuple[int, str]]
    timings: dict[str, float] = field(default_factory=dict)
    #: decoder processes that decoded it (0: inline)
    workers: int = 0


def _done(value) -> Future:
    """A finished future holding ``value``: what the inline decoder hands over in place of a worker's."""
    f: Future = Future()
    f.set_result(value)
    return f


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it shuts the pool down)


def _process_pool(workers: int):
    """Decoder processes. Linux: forked (no re-import of the caller's ``__main__``, so a script without a
    ``if __name__ == "__main__"`` guard works; the children only run PIL and numpy, never the parent's
    ONNX Runtime threads). Elsewhere: spawned (the platform default, which needs that guard)."""
    import multiprocessing as mp
    import sys
    import warnings
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded, use of fork()": see above
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method), initializer=_worker_init)


class StreamEncoder:
    """``StreamEncoder(backbone, hasher).stream(files)`` -> :class:`EncodedBatch` per ``batch_size`` sources, in order.

    ``hasher=None`` gives features only. ``draft``: large JPEGs decode at 1/2-1/8 scale near the
    input size (see :func:`deephash.data.images.decode_image`). ``workers=None``: ``DEEPHASH_DECODE_WORKERS``
    if set, else chosen from the measured decode and backbone costs (:func:`choose_workers`)."""

    def __init__(self, backbone, hasher=None, *, batch_size: int = 64, workers: int | None = None, draft: bool = True,
                 max_pixels: int | None = None, prefetch: int = 2) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive whole number; got {batch_size}")
        if workers is not None and workers < 0:
            raise ConfigError(f"workers must be 0 (decode inline) or more; got {workers}")
        self.backbone = backbone
        self.hasher = hasher
        self.batch_size = int(batch_size)
        self.workers = workers
        self.prefetch = max(0, int(prefetch))
        self.spec = DecodeSpec(decode_size_of(backbone), bool(draft), None if max_pixels is None else int(max_pixels))

    # -- the stages -------------------------------------------------------------------------------
    def _chunks(self, sources: Sequence, start: int, stop: int, max_items: int | None = CHUNK_MAX) -> list[tuple[int, int]]:
        out, s, acc = [], start, 0
        for i in range(start, stop):
            acc += source_bytes(sources[i])
            if acc >= CHUNK_BYTES or (max_items is not None and i + 1 - s >= max_items):
                out.append((s, i + 1))
                s, acc = i + 1, 0
        if s < stop:
            out.append((s, stop))
        return out

    def _finish(self, start: int, stop: int, parts: list[tuple[int, DecodedChunk]], wait: float, workers: int,
                embedded: dict[int, tuple[np.ndarray, float]]) -> EncodedBatch:
        """Backbone and hasher on one batch's decoded chunks (``parts``: (first position, chunk)); chunks whose
        first position is in ``embedded`` come with their features and backbone seconds already."""
        positions = np.concatenate([s + np.flatnonzero(c.ok) for s, c in parts]) if parts else np.zeros(0, np.int64)
        failed = [(s + j, why) for s, c in parts for j, why in c.reasons]
        pre = {s: embedded.pop(s) for s, _ in parts if s in embedded}
        feats: list[np.ndarray] = []
        run: list[np.ndarray] = []  # decoded images not embedded yet, in order
        with Timer() as t_bb:
            for s, c in parts:
                if s in pre:
                    feats += [self.backbone.embed(np.concatenate(run))] if run else []
                    run = []
                    feats.append(pre[s][0])
                elif len(c.images):
                    run.append(c.images)
            if run:
                feats.append(self.backbone.embed(run[0] if len(run) == 1 else np.concatenate(run)))
        out = np.concatenate(feats) if len(feats) > 1 else feats[0] if feats else np.zeros((0, self.backbone.dim), np.float32)
        codes = None
        with Timer() as t_h:
            if self.hasher is not None and len(out):
                codes = self.hasher.encode(out)
        timings = {"decode": sum(c.seconds for _, c in parts), "decode_wait": wait,
                   "backbone": t_bb.seconds + sum(secs for _, secs in pre.values()), "hash": t_h.seconds}
        return EncodedBatch(start, stop, positions.astype(np.int64), out, codes, failed, timings, workers)

    def _probe(self, chunk: DecodedChunk, rest: bool) -> tuple[int, np.ndarray, float]:
        """Embed the first chunk (decoded inline); from its decode and backbone times, the decoder processes for
        the ``rest`` of the sources (0 if there is none). Returns them, the chunk's features and the backbone seconds."""
        with Timer() as t:
            feats = self.backbone.embed(chunk.images) if len(chunk.images) else np.zeros((0, self.backbone.dim), np.float32)
        if not rest:
            return 0, feats, t.seconds
        if not len(chunk.images):  # nothing decoded to time the backbone on: assume decoding matters
            return choose_workers(1.0, 0.0), feats, t.seconds
        return choose_workers(chunk.seconds / len(chunk.ok), t.seconds / len(chunk.images)), feats, t.seconds

    def stream(self, sources: Sequence, names: Sequence[str] | None = None) -> Iterator[EncodedBatch]:
        """Encode ``sources`` (paths or bytes); ``names`` label them in the reasons of bad images."""
        n = len(sources)
        if names is not None and len(names) != n:
            raise ConfigError(f"names must match the images one to one; got {len(names)} names for {n} images")
        if n == 0:
            return
        bounds = [(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]

        def args(s: int, e: int):
            return [sources[i] for i in range(s, e)], self.spec, None if names is None else [names[i] for i in range(s, e)]

        workers = self.workers if self.workers is not None else env_workers()
        ready: dict[int, Future] = {}  # chunks decoded before the decoder was chosen, by first position
        embedded: dict[int, tuple[np.ndarray, float]] = {}  # and their features, backbone seconds
        chunks_of = {bounds[0]: self._chunks(sources, *bounds[0])}
        if workers is None:
            # the first chunk is cut by bytes only: a batch of small files is one chunk (one backbone call as ever)
            cs, ce = self._chunks(sources, *bounds[0], max_items=None)[0]
            chunks_of[bounds[0]] = [(cs, ce)] + self._chunks(sources, ce, bounds[0][1])
            first = decode_chunk(*args(cs, ce))
            ready[cs] = _done(first)
            workers, feats, secs = self._probe(first, rest=ce < n)
            embedded[cs] = (feats, secs)
        pool = _process_pool(workers) if workers else None
        prefetch = self.prefetch if pool is not None else 0  # inline decoding ahead of the backbone overlaps nothing

        def decode(cs: int, ce: int) -> Future:
            if cs in ready:
                return ready.pop(cs)
            if pool is None:
                return _done(decode_chunk(*args(cs, ce)))
            return pool.submit(decode_chunk, *args(cs, ce))

        pending: deque = deque()
        todo = iter(bounds)

        def submit() -> None:
            b = next(todo, None)
            if b is not None:
                chunks = chunks_of.pop(b, None) or self._chunks(sources, *b)
                pending.append((b, [(cs, decode(cs, ce)) for cs, ce in chunks]))

        finished = False
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see _process_pool
                for _ in range(prefetch + 1):
                    submit()
            while pending:
                (s, e), futs = pending.popleft()
                with Timer() as t_wait:
                    parts = [(cs, f.result()) for cs, f in futs]
                submit()  # keep the decoders busy while the backbone runs
                yield self._finish(s, e, parts, t_wait.seconds, workers, embedded)
            finished = True
        finally:
            if pool is not None:
                # all done: wait for the idle workers to exit (nothing lingers); stopped early: do not wait
                pool.shutdown(wait=finished, cancel_futures=not finished)


@dataclass
class EncodedImages:
    """Everything :func:`encode_images` made: rows of ``features``/``codes`` belong to ``positions`` (the
    sources that decoded, in order); ``failed`` lists ``(position, reason)`` of the others."""

    positions: np.ndarray
    features: np.ndarray
    codes: np.ndarray | None
    failed: list[tuple[int, str]]
    timings: dict[str, float]


def encode_images(sources: Sequence, backbone, hasher=None, *, names: Sequence[str] | None = None,
                  **encoder_kw: Any) -> EncodedImages:
    """Images in -> features (and codes with a ``hasher``) out, through the streaming encoder.

    The function-level entry for code that holds its own images and wants everything at once
    (e.g. a distributed engine's workers: pass ``workers=0`` where the engine already runs one
    process per core). Bad images are skipped, never raised; see ``failed``."""
    batches = list(StreamEncoder(backbone, hasher, **encoder_kw).stream(sources, names))
    feats = [b.features for b in batches]
    pos = [b.positions for b in batches]
    codes = [b.codes for b in batches if b.codes is not None]
    nb = getattr(hasher, "n_bits", 0) // 8 if hasher is not None else 0
    timings: dict[str, float] = {}
    for b in batches:
        for k, v in b.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    return EncodedImages(
        np.concatenate(pos) if pos else np.zeros(0, np.int64),
        np.concatenate(feats) if feats else np.zeros((0, backbone.dim), np.float32),
        (np.concatenate(codes) if codes else np.zeros((0, nb), np.uint8)) if hasher is not None else None,
        [f for b in batches for f in b.failed],
        timings,
    )


def require_all(result: EncodedImages) -> EncodedImages:
    """``result`` unchanged if every image decoded; else a :class:`DataError` naming the first bad one."""
    if result.failed:
        raise DataError(result.failed[0][1])
    return result
