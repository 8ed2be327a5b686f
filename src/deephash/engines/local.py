"""The single-process engine: the archive's features (cached, resumable) through this process's backbone."""
from __future__ import annotations

import os
import time

import numpy as np

from deephash.engines.base import Engine, EncodedArchive, Progress, check_positions, register_engine, report_progress
from deephash.errors import ConfigError


@register_engine("local")
class LocalEngine(Engine):
    """Encodes in this process: :func:`deephash.features.extract_features` (decode + backbone, with its
    per-image feature cache) then the hasher on all features at once. The default engine."""

    name = "local"

    def __init__(self, *, batch_size: int = 64, use_cache: bool = True) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
        self.batch_size = int(batch_size)
        self.use_cache = bool(use_cache)

    def encode(self, archive, checkpoint: str | os.PathLike, model, *, positions: np.ndarray | None = None,
               progress: Progress = True) -> EncodedArchive:
        from deephash.features import extract_features

        t0 = time.perf_counter()
        positions = check_positions(positions, len(archive))
        fs = extract_features(archive, model.backbone, positions, batch_size=self.batch_size, use_cache=self.use_cache,
                              progress=progress is True)
        codes = model.hasher.encode(fs.features)
        report_progress(progress, len(positions), len(positions))
        return EncodedArchive(codes, fs.features, fs.index, fs.failed,
                              {"engine": self.name, "images": len(positions), "wall_s": time.perf_counter() - t0})
