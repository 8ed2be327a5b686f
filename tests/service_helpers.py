"""Running ``deephash serve`` as a real process on loopback for the service tests."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

from deephash.service.process import ServeProcess, free_port  # noqa: F401  (re-exported for the tests)

KEY = "test-key-0123456"


def copy_index(index: Path, dst: Path) -> Path:
    """Copy an index and the checkpoint it names (a relative path) into ``dst``."""
    from deephash.index import HashIndex

    dst.mkdir(parents=True, exist_ok=True)
    model = HashIndex.load(index).meta["model"]
    shutil.copyfile(index, dst / index.name)
    shutil.copyfile(index.parent / model, dst / model)
    return dst / index.name


def png_bytes(w: int = 48, h: int = 48, seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A valid-looking PNG that declares ``w x h`` pixels but holds almost no data."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


Server = ServeProcess  # one launcher, the package's: deephash.service.process
