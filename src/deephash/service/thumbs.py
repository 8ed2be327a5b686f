"""A bounded in-memory LRU of encoded thumbnails (JPEG bytes), safe to share between request threads."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Hashable

from PIL import Image

from deephash.data.images import decode_image


def make_thumbnail(path: Path, size: int, *, max_pixels: int) -> bytes:
    """Decode ``path`` (size-checked) and shrink it to fit ``size x size``; returns JPEG bytes."""
    im = decode_image(path, max_pixels=max_pixels)
    im.thumbnail((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class ThumbnailCache:
    """LRU bounded both by entry count and by total bytes."""

    def __init__(self, *, max_items: int = 4096, max_bytes: int = 64 * 2**20) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._d: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._d[key] = value
            self._bytes += len(value)
            while len(self._d) > self.max_items or self._bytes > self.max_bytes:
                _, v = self._d.popitem(last=False)
                self._bytes -= len(v)

    def drop(self, match) -> None:
        """Forget every entry whose key satisfies ``match(key)``."""
        with self._lock:
            for key in [k for k in self._d if match(k)]:
                self._bytes -= len(self._d.pop(key))

    def __len__(self) -> int:
        return len(self._d)

    @property
    def nbytes(self) -> int:
        return self._bytes
