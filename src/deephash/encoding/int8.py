"""An int8 backbone calibrated on the archive at hand (see :mod:`deephash.backbones.int8`)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from deephash.backbones.base import Backbone
from deephash.encoding.decode import DecodeSpec, decode_chunk
from deephash.encoding.stream import decode_size_of
from deephash.utils import sha1_of

#: images the activation ranges are calibrated on (evenly spaced over the archive)
N_CALIBRATION = 256


def calibration_positions(n_sources: int, n: int = N_CALIBRATION) -> np.ndarray:
    """``n`` positions evenly spread over ``n_sources`` (all of them when there are fewer): deterministic."""
    if n_sources <= n:
        return np.arange(n_sources)
    return np.unique(np.linspace(0, n_sources - 1, n).round().astype(np.int64))


def _identity(src) -> list:
    if isinstance(src, bytes):
        return ["bytes", sha1_of(src.hex())]
    st = os.stat(src)
    return [str(src), st.st_size, st.st_mtime_ns]


def int8_backbone(backbone: Backbone, sources: Sequence, *, n: int = N_CALIBRATION, draft: bool = True) -> Backbone:
    """``backbone`` quantised to int8, calibrated on ``n`` of ``sources`` (files or bytes; bad ones are left out)."""
    from deephash.backbones.int8 import Int8Backbone

    pos = calibration_positions(len(sources), n)
    picked = [sources[int(i)] for i in pos]
    spec = DecodeSpec(decode_size_of(backbone), draft)
    # named by the files (path, size, mtime) and the decoding, not the pixels: no decode when the model is cached
    cid = sha1_of([_identity(s) for s in picked], spec.cache_tag())[:16]
    return Int8Backbone(backbone, lambda: decode_chunk(picked, spec).images, cid)
