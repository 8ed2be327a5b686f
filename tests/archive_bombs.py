"""Archives for the robustness tests, written byte by byte: decompression bombs (a member of
gigabytes of zeros in a few megabytes) and members that declare any size, made in a second.

After a full flush a deflate compressor starts afresh, so every further MiB of zeros compresses to
the same bytes: a stream of N MiB of zeros is those bytes N times (no gigabyte is ever held)."""
from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

MIB = 2**20
_ZERO_MIB = bytes(MIB)


def _zeros_deflate(prefix: bytes, n_mib: int, suffix: bytes) -> bytes:
    """A raw deflate stream of ``prefix``, ``n_mib`` MiB of zeros, then ``suffix``."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    mib = c.compress(_ZERO_MIB) + c.flush(zlib.Z_FULL_FLUSH)
    return head + mib * n_mib + c.compress(suffix) + c.flush()


def _crc(prefix: bytes, n_mib: int, suffix: bytes) -> int:
    crc = zlib.crc32(prefix)
    for _ in range(n_mib):
        crc = zlib.crc32(_ZERO_MIB, crc)
    return zlib.crc32(suffix, crc) & 0xFFFFFFFF


def _tar_entry(name: str, data: bytes) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def tar_gz_bomb(path: Path, files: dict[str, bytes], bomb: str, n_mib: int) -> Path:
    """A .tar.gz of ``files`` followed by the member ``bomb``: ``n_mib`` MiB of zeros."""
    head = b"".join(_tar_entry(n, d) for n, d in files.items())
    ti = tarfile.TarInfo(bomb)
    ti.size = n_mib * MIB
    head += ti.tobuf(tarfile.GNU_FORMAT)
    tail = bytes(2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
    gz_head = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x02\xff"
    total = len(head) + n_mib * MIB + len(tail)
    path.write_bytes(gz_head + _zeros_deflate(head, n_mib, tail)
                     + struct.pack("<II", _crc(head, n_mib, tail), total & 0xFFFFFFFF))
    return path


def tar_sparse(path: Path, files: dict[str, bytes], name: str, size: int) -> Path:
    """A .tar.gz of ``files`` and a sparse member ``name`` (GNU PAX 0.1) declaring ``size`` bytes while
    storing one block: unpacked as is, a file of ``size`` bytes appears from nothing."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for n, d in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            tf.addfile(ti, io.BytesIO(d))
        ti = tarfile.TarInfo(name)
        ti.size = tarfile.BLOCKSIZE
        ti.pax_headers = {"GNU.sparse.size": str(size), "GNU.sparse.numblocks": "1",
                          "GNU.sparse.map": f"0,{tarfile.BLOCKSIZE}", "GNU.sparse.name": name}
        tf.addfile(ti, io.BytesIO(bytes(tarfile.BLOCKSIZE)))
    return path


def zip_bomb(path: Path, files: dict[str, bytes], bomb: str, n_mib: int, *, declare: int | None = None) -> Path:
    """A .zip of ``files`` (stored) and the deflated member ``bomb``: ``n_mib`` MiB of zeros, its
    size declared as ``declare`` when given (a lying central directory), in zip64 fields."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    out = bytearray(buf.getvalue())
    # keep the members written above, then append the bomb's local entry and rewrite the central directory
    with zipfile.ZipFile(io.BytesIO(bytes(out))) as zf:
        infos = zf.infolist()
    cd_start = struct.unpack_from("<I", out, len(out) - 22 + 16)[0]
    central = bytes(out[cd_start : len(out) - 22])
    out = out[:cd_start]
    data = _zeros_deflate(b"", n_mib, b"")
    size = n_mib * MIB if declare is None else declare
    crc = _crc(b"", n_mib, b"")
    name = bomb.encode()
    offset = len(out)
    local_extra = struct.pack("<HHQQ", 1, 16, size, len(data))
    out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                       len(name), len(local_extra)) + name + local_extra + data
    cd_extra = struct.pack("<HHQQ", 1, 16, size, len(data))
    entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                        len(name), len(cd_extra), 0, 0, 0, 0, offset) + name + cd_extra
    cd_offset = len(out)
    out += central + entry
    n = len(infos) + 1
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central) + len(entry), cd_offset, 0)
    path.write_bytes(bytes(out))
    return path
