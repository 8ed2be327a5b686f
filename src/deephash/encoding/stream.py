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
- *backbone* and *hasher*: in the calling process, one call per batch.
- *writer*: the caller, who gets one :class:`EncodedBatch` per batch, in source order.

Results do not depend on ``workers``, ``prefetch`` or the chunking: batches are the same position
ranges whatever runs them.
"""
from __future__ import annotations

import os
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from deephash.encoding.decode import DecodedChunk, DecodeSpec, decode_chunk, source_bytes
from deephash.errors import ConfigError, DataError
from deephash.utils import Timer

#: compressed bytes per decode task (a 12-MP JPEG is one task; ~600 CIFAR JPEGs would be, capped at CHUNK_MAX)
CHUNK_BYTES = 1 << 20
CHUNK_MAX = 32
#: below this many images the decoder runs inline: starting worker processes would cost more than it saves
AUTO_MIN_IMAGES = 32


def decode_size_of(backbone) -> int:
    """The square size images are decoded to for ``backbone`` (a fine-tuned trunk's training image size, else its input)."""
    return int(getattr(backbone, "decode_size", None) or backbone.preprocessing.size)


def default_workers(n_images: int) -> int:
    """Decoder processes for ``n_images``: ``DEEPHASH_DECODE_WORKERS`` if set, else one per core (0 for few images)."""
    env = os.environ.get("DEEPHASH_DECODE_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise ConfigError(f"DEEPHASH_DECODE_WORKERS must be a whole number; got {env!r}") from None
    return 0 if n_images < AUTO_MIN_IMAGES else min(8, os.cpu_count() or 1)


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
    input size (see :func:`deephash.data.images.decode_image`). ``workers=None``: one decoder process
    per core for 32 images or more, else inline."""

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
    def _chunks(self, sources: Sequence, start: int, stop: int) -> list[tuple[int, int]]:
        out, s, acc = [], start, 0
        for i in range(start, stop):
            acc += source_bytes(sources[i])
            if acc >= CHUNK_BYTES or i + 1 - s >= CHUNK_MAX:
                out.append((s, i + 1))
                s, acc = i + 1, 0
        if s < stop:
            out.append((s, stop))
        return out

    def _finish(self, start: int, stop: int, parts: list[tuple[int, DecodedChunk]], wait: float) -> EncodedBatch:
        """Backbone and hasher on one batch's decoded chunks (``parts``: (first position, chunk))."""
        imgs = [c.images for _, c in parts if len(c.images)]
        positions = np.concatenate([s + np.flatnonzero(c.ok) for s, c in parts]) if parts else np.zeros(0, np.int64)
        failed = [(s + j, why) for s, c in parts for j, why in c.reasons]
        with Timer() as t_bb:
            if imgs:
                feats = self.backbone.embed(imgs[0] if len(imgs) == 1 else np.concatenate(imgs))
            else:
                feats = np.zeros((0, self.backbone.dim), np.float32)
        codes = None
        with Timer() as t_h:
            if self.hasher is not None and len(feats):
                codes = self.hasher.encode(feats)
        timings = {"decode": sum(c.seconds for _, c in parts), "decode_wait": wait, "backbone": t_bb.seconds,
                   "hash": t_h.seconds}
        return EncodedBatch(start, stop, positions.astype(np.int64), feats, codes, failed, timings)

    def stream(self, sources: Sequence, names: Sequence[str] | None = None) -> Iterator[EncodedBatch]:
        """Encode ``sources`` (paths or bytes); ``names`` label them in the reasons of bad images."""
        n = len(sources)
        if names is not None and len(names) != n:
            raise ConfigError(f"names must match the images one to one; got {len(names)} names for {n} images")
        workers = default_workers(n) if self.workers is None else self.workers
        bounds = [(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]

        def args(s: int, e: int):
            return [sources[i] for i in range(s, e)], self.spec, None if names is None else [names[i] for i in range(s, e)]

        if workers == 0 or n == 0:
            for s, e in bounds:
                yield self._finish(s, e, [(s, decode_chunk(*args(s, e)))], 0.0)
            return
        pool = _process_pool(workers)
        pending: deque = deque()
        todo = iter(bounds)

        def submit() -> None:
            b = next(todo, None)
            if b is not None:
                pending.append((b, [(cs, pool.submit(decode_chunk, *args(cs, ce))) for cs, ce in self._chunks(sources, *b)]))

        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see _process_pool
                for _ in range(self.prefetch + 1):
                    submit()
            while pending:
                (s, e), futs = pending.popleft()
                with Timer() as t_wait:
                    parts = [(cs, f.result()) for cs, f in futs]
                submit()  # keep the decoders busy while the backbone runs
                yield self._finish(s, e, parts, t_wait.seconds)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


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
