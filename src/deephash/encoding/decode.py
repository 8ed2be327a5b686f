"""The decoder stage: image files or bytes -> ``uint8 (n, size, size, 3)`` at the backbone's input size.

Runs in the encoder's worker processes (or inline); everything here is picklable and free of
backbone state. A bad image never raises out of a chunk: it is reported with the reason
:func:`deephash.data.images.decode_image` gives, and the other images of the chunk still decode.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.data.images import load_rgb
from deephash.errors import DataError


@dataclass(frozen=True)
class DecodeSpec:
    """How images are turned into backbone input: the square ``size``, JPEG draft decoding, the pixel limit
    (None: :func:`deephash.data.images.max_pixels_limit`)."""

    size: int
    draft: bool = True
    max_pixels: int | None = None

    def cache_tag(self) -> dict:
        """What the feature cache is keyed by (draft decoding changes the pixels of large JPEGs)."""
        return {"decode": "draft" if self.draft else "full"}


@dataclass
class DecodedChunk:
    """``images[j]`` is the source at ``ok[j]``-th True position; ``reasons`` are ``(offset, why)`` of the rest."""

    images: np.ndarray
    ok: np.ndarray
    reasons: list[tuple[int, str]]
    seconds: float


def decode_one(src, spec: DecodeSpec, name: str | None = None) -> np.ndarray:
    """One image -> ``uint8 (size, size, 3)``; raises :class:`DataError` (bad image) or ``OSError`` (unreadable)."""
    return load_rgb(src if isinstance(src, bytes) else Path(src), spec.size, draft=spec.draft, name=name,
                    max_pixels=spec.max_pixels)


def decode_chunk(sources: Sequence, spec: DecodeSpec, names: Sequence[str] | None = None) -> DecodedChunk:
    """Decode a run of sources; the bad ones are skipped with their reason (what ``deephash`` reports)."""
    t0 = time.perf_counter()
    imgs, ok, reasons = [], np.zeros(len(sources), bool), []
    for j, src in enumerate(sources):
        try:
            imgs.append(decode_one(src, spec, None if names is None else names[j]))
            ok[j] = True
        except DataError as e:
            reasons.append((j, str(e)))
        except OSError as e:
            label = (names[j] if names is not None else None) or ("upload" if isinstance(src, bytes) else str(src))
            reasons.append((j, f"{label}: cannot read ({e})"))
    arr = np.stack(imgs) if imgs else np.zeros((0, spec.size, spec.size, 3), np.uint8)
    return DecodedChunk(arr, ok, reasons, time.perf_counter() - t0)


def source_bytes(src) -> int:
    """The size of a source on disk (0 when unknown): chunks are cut by bytes so that workers share large files evenly."""
    if isinstance(src, bytes):
        return len(src)
    try:
        return os.stat(src).st_size
    except OSError:
        return 0
