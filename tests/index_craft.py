"""Helpers of the robustness tests: take an index file apart and write it back with a tampered
header or arrays, every checksum recomputed — so only the structure is wrong."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from deephash.index import hash_index as H


def split_index(path: Path) -> tuple[dict, dict[str, bytes]]:
    """``(header, {array name: raw bytes})`` of an index file."""
    data = Path(path).read_bytes()
    _magic, _ver, _flags, hlen = H._PREAMBLE.unpack_from(data, 0)
    header = json.loads(data[H._PREAMBLE.size:H._PREAMBLE.size + hlen])
    pos, arrays = H._PREAMBLE.size + hlen, {}
    for s in header["arrays"]:
        arrays[s["name"]] = data[pos:pos + s["nbytes"]]
        pos += s["nbytes"]
    return header, arrays


def write_index(path: Path, header, arrays: dict[str, bytes], *, fix_specs: bool = True) -> Path:
    """Write ``header`` and ``arrays``; with ``fix_specs`` every array spec's offset, nbytes and CRC32
    are recomputed from ``arrays`` (shapes and dtypes are left as the header says)."""
    if fix_specs and isinstance(header, dict) and isinstance(header.get("arrays"), list):
        off = 0
        for s in header["arrays"]:
            if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] in arrays:
                b = arrays[s["name"]]
                s.update(offset=off, nbytes=len(b), crc32=zlib.crc32(b) & 0xFFFFFFFF)
                off += len(b)
    if isinstance(header, dict) and isinstance(header.get("token"), str):
        header["token"] = H.header_token(header)  # the header's digest too: only the structure is wrong
    hb = json.dumps(header).encode()
    names = [s["name"] for s in header["arrays"]] if fix_specs and isinstance(header, dict) and isinstance(header.get("arrays"), list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] in arrays for s in header["arrays"]) else list(arrays)
    body = b"".join(arrays[n] for n in names)
    Path(path).write_bytes(H._PREAMBLE.pack(H.MAGIC, H.FORMAT_VERSION, 0, len(hb)) + hb + body + H._TRAILER)
    return Path(path)


def spec(header: dict, name: str) -> dict:
    return next(s for s in header["arrays"] if s["name"] == name)


def small_index(path: Path, *, n: int = 6, n_bits: int = 16, labels: bool = True, features: bool = True) -> Path:
    """A saved index of ``n`` random codes, ids 0..n-1, two classes, float16 features."""
    rng = np.random.default_rng(0)
    ix = H.HashIndex(n_bits, searcher="numpy", class_names=["airplane", "cat"] if labels else None)
    ix.add(rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8), paths=[f"c/{i}.jpg" for i in range(n)],
           labels=np.arange(n) % 2 if labels else None,
           features=rng.normal(size=(n, 4)).astype(np.float32) if features else None)
    return ix.save(path)
