"""An append-only change journal beside an index file, so that one added or removed image costs
one small appended record instead of rewriting the whole index.

``<index>.journal`` starts with a magic tag, a format version, the *token* of the index file it
extends (the digest :meth:`HashIndex.save` writes into every index header) and, since format 2, a
CRC32 of those bytes (a damaged head is refused rather than taken for an older journal; format 1
journals are still read). Each record is

    b"DHJR" | uint8 op (1 add, 2 remove) | uint64 payload length | payload | uint32 CRC32(op + payload)

An *add* payload is a small JSON header (ids, paths, dtypes and shapes) followed by the rows'
codes, labels and features; a *remove* payload is the ids, int64. Each append is flushed and
fsync'ed before it returns, so an acknowledged change survives a crash. On load the records are
replayed in order; a record cut short by a crash (or failing its checksum) ends the replay there
and is cut off by the next append — unless intact records follow it: that is corruption inside the
journal, not an append cut short, and every write (append or save over the file) is then refused,
with a message saying so, until the user restores the journal or moves it aside. A journal whose token is not the index file's belongs to an
older index file (the process died between rewriting the index and deleting the journal): its
changes are already in the index, so it is ignored and removed by the next save.

One writer at a time: an append takes an exclusive ``flock`` on the journal and first checks that
nothing changed on disk since this process last read or wrote it (the index file's token, the
journal's records). If another process got there first — the service running while
``deephash index --update`` adds files, say — the append raises :class:`IndexChangedError` instead
of overwriting the other writer's records; reload the index and redo the change.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from deephash.errors import IndexChangedError, IndexFormatError

if TYPE_CHECKING:
    from deephash.index.hash_index import HashIndex

log = logging.getLogger(__name__)

JOURNAL_MAGIC = b"DHJOURNL"
JOURNAL_VERSION = 2
_HEAD_V1 = struct.Struct("<8sI16s")  # magic, version, token of the index file it extends
_HEAD = struct.Struct("<8sI16sI")  # version 2: the same and a CRC32 of those 28 bytes
_REC = struct.Struct("<4sBQ")  # record tag, op, payload length
_REC_TAG = b"DHJR"
_CRC = struct.Struct("<I")
OP_ADD, OP_REMOVE = 1, 2


def _pack_head(token: bytes) -> bytes:
    body = _HEAD_V1.pack(JOURNAL_MAGIC, JOURNAL_VERSION, token)
    return body + _CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)


def _head_size(data: bytes) -> int:
    """Bytes of the head of a journal starting with ``data`` (format 1 had no checksum)."""
    if len(data) < _HEAD_V1.size:
        return _HEAD.size
    return _HEAD_V1.size if _HEAD_V1.unpack_from(data, 0)[1] == 1 else _HEAD.size


def _parse_head(data: bytes, path: Path) -> tuple[bytes, int] | None:
    """``(token, head size)`` of a journal's bytes; None for a head cut short (nothing was
    acknowledged through it); a damaged head is an :class:`IndexFormatError` — the token says which
    index file the records extend, so a flipped bit there must not pass for an older journal."""
    size = _head_size(data)
    if len(data) < size:
        return None
    magic, version, token = _HEAD_V1.unpack_from(data, 0)
    if magic != JOURNAL_MAGIC:
        raise IndexFormatError(f"{path}: not a deephash index journal (magic {magic!r})")
    if version > JOURNAL_VERSION:
        raise IndexFormatError(f"{path}: journal format {version} was written by a newer deephash")
    if version != 1 and _CRC.unpack_from(data, _HEAD_V1.size)[0] != zlib.crc32(data[:_HEAD_V1.size]) & 0xFFFFFFFF:
        raise IndexFormatError(f"{path}: the journal's head is damaged (it fails its checksum), so it cannot tell which "
                               "index file its records extend; restore it from a backup, or move it aside "
                               f"(mv '{path}' '{path}.damaged') to go on from the index file alone")
    return token, size


def journal_path(index_path: str | os.PathLike) -> Path:
    p = Path(index_path)
    return p.with_name(p.name + ".journal")


def _add_payload(index: "HashIndex", ids: np.ndarray) -> bytes:
    rows = np.sort(index.rows_of(ids))  # in index order, so a replay rebuilds the same row order
    ids = index.ids[rows]
    arrays = {"codes": index.codes[rows]}
    if index.labels is not None:
        arrays["labels"] = index.labels[rows]
    if index.features is not None:
        arrays["features"] = index.features[rows]
    head = {"ids": [int(i) for i in ids], "paths": [index.paths[int(r)] for r in rows],
            "arrays": [{"name": k, "dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()]}
    hb = json.dumps(head).encode("utf-8")
    return struct.pack("<I", len(hb)) + hb + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())


def _apply_add(index: "HashIndex", payload: bytes) -> None:
    (hlen,) = struct.unpack_from("<I", payload, 0)
    head = json.loads(payload[4 : 4 + hlen].decode("utf-8"))
    pos, arrays = 4 + hlen, {}
    for s in head["arrays"]:
        dt = np.dtype(s["dtype"])
        n = int(np.prod(s["shape"])) * dt.itemsize
        arrays[s["name"]] = np.frombuffer(payload[pos : pos + n], dtype=dt).reshape(s["shape"]).copy()
        pos += n
    index.add(arrays["codes"], ids=head["ids"], paths=head["paths"], labels=arrays.get("labels"),
              features=arrays.get("features"))


def _records(data: bytes, pos: int):
    """``(op, payload, end)`` of the complete, checksum-valid records from ``pos`` on, in order;
    stops at the first incomplete or damaged one."""
    while pos + _REC.size <= len(data):
        tag, op, n = _REC.unpack_from(data, pos)
        end = pos + _REC.size + n + _CRC.size
        if tag != _REC_TAG or end > len(data):
            return
        payload = data[pos + _REC.size : pos + _REC.size + n]
        (crc,) = _CRC.unpack_from(data, end - _CRC.size)
        if zlib.crc32(bytes([op]) + payload) & 0xFFFFFFFF != crc:
            return
        yield op, payload, end
        pos = end


def _record_at(data: bytes, pos: int) -> int | None:
    """End of the complete, checksum-valid record starting at ``pos``, else None."""
    return next((end for _op, _payload, end in _records(data, pos)), None)


def _intact_after(data: bytes, pos: int) -> int:
    """How many complete, checksum-valid records lie after byte ``pos`` (found by their tag): any
    means the damage at ``pos`` is corruption inside the journal, not an append cut short."""
    count, i = 0, data.find(_REC_TAG, pos + 1)
    while i != -1:
        end = _record_at(data, i)
        if end is not None:
            count += 1
            i = data.find(_REC_TAG, end)
        else:
            i = data.find(_REC_TAG, i + 1)
    return count


class Journal:
    """Appends changes of an index to ``<index>.journal``; see the module docstring for the format."""

    def __init__(self, index_path: str | os.PathLike, token: bytes, file_token: Callable[[Path], str | None]) -> None:
        """``token``: the index file's, as this process read or wrote it; ``file_token(path)``: the token
        the index file holds on disk now (given by the index, whose file format this module does not read)."""
        self.index_path = Path(index_path)
        self.path = journal_path(index_path)
        self.token = token
        self.file_token = file_token
        self.good_bytes: int | None = None  # set by replay: where the last complete record ends
        #: set by replay when a damaged record has intact ones after it: why writes are refused
        self.damage: str | None = None

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def replay(self, index: "HashIndex") -> int:
        """Apply this journal's complete records to ``index`` (loaded from the file the journal
        extends); returns how many were applied."""
        if not self.path.exists():
            self.good_bytes = None
            return 0
        data = self.path.read_bytes()
        head = _parse_head(data, self.path)
        if head is None:
            self.good_bytes = None  # a header cut short: nothing was acknowledged through it
            return 0
        token, head_size = head
        if token != self.token:
            log.warning("%s extends an older index file; its changes are already in the index — ignored", self.path)
            self.good_bytes = None
            return 0
        pos, applied = head_size, 0
        self.damage = None
        for op, payload, end in _records(data, head_size):
            try:
                if op == OP_ADD:
                    _apply_add(index, payload)
                elif op == OP_REMOVE:
                    if len(payload) % 8:
                        raise ValueError(f"a removal of {len(payload)} bytes is not a list of int64 ids")
                    index.remove(np.frombuffer(payload, dtype="<i8"))
                else:
                    raise IndexFormatError(f"{self.path}: unknown journal operation {op} at byte {pos}")
            except (ValueError, KeyError, TypeError, IndexError, struct.error) as e:
                raise IndexFormatError(f"{self.path}: journal record at byte {pos} is malformed "
                                       f"({type(e).__name__}: {e})") from None
            pos, applied = end, applied + 1
        if pos < len(data):
            later = _intact_after(data, pos)
            if later:
                self.damage = (
                    f"{self.path}: the journal record at byte {pos} fails its checksum and {later} intact record(s) "
                    f"follow it: the journal is corrupt (not an append cut short); the index was loaded with the "
                    f"{applied} record(s) before the damage and without the {later} after it, and writes to it are "
                    f"refused so that they are not lost — restore the journal from a backup, or move it aside "
                    f"(mv '{self.path}' '{self.path}.damaged') to go on from the index file alone")
                log.warning("%s", self.damage)
            else:
                log.warning("%s: %d trailing bytes after the last complete record (an interrupted append) are ignored",
                            self.path, len(data) - pos)
        self.good_bytes = pos
        return applied

    def _changed(self, why: str) -> IndexChangedError:
        return IndexChangedError(f"{self.index_path} changed on disk since this process loaded it ({why}): another "
                                 "process is writing it; reload the index and make the change again")

    def check_unchanged(self, fh=None) -> None:
        """Raise :class:`IndexChangedError` when the index file or the journal holds changes this
        process has not seen (``fh``: the journal, open and locked by the caller)."""
        if self.index_path.exists() and self.file_token(self.index_path) != self.token.hex():
            raise self._changed("the index file was rewritten")
        if fh is None:
            if not self.path.exists():
                return
            with open(self.path, "rb") as f:
                return self.check_unchanged(f)
        fh.seek(0)
        head = _parse_head(fh.read(_HEAD.size), self.path)
        if head is None:
            return  # no journal, or a header cut short: nothing acknowledged through it
        token, head_size = head
        if token != self.token:
            return  # a journal of an older index file: its changes are in ours
        start = head_size if self.good_bytes is None else self.good_bytes
        fh.seek(start)
        if next(_records(fh.read(), 0), None) is not None:
            raise self._changed("its journal holds records this process has not read")

    def _append(self, op: int, payload: bytes) -> None:
        import fcntl

        self.refuse_if_damaged()
        rec = _REC.pack(_REC_TAG, op, len(payload)) + payload + _CRC.pack(zlib.crc32(bytes([op]) + payload) & 0xFFFFFFFF)
        created = not self.path.exists()
        with open(self.path, "a+b") as fh:  # created if missing; nothing is truncated before the lock
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            self.check_unchanged(fh)
            fresh = self.good_bytes is None
            if fresh:  # no journal of ours yet: (re)start it with our token
                fh.truncate(0)
                fh.write(_pack_head(self.token))
            else:
                fh.truncate(self.good_bytes)  # drop a record an earlier crash left half-written
            fh.write(rec)  # append mode: lands at the end
            fh.flush()
            os.fsync(fh.fileno())
            self.good_bytes = fh.tell()
        if created:  # the journal's directory entry must survive a crash too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def refuse_if_damaged(self) -> None:
        """Raise :class:`IndexFormatError` when replay found intact records after a damaged one (a
        write would cut them off, or a save fold the journal away without them)."""
        if self.damage:
            raise IndexFormatError(self.damage)

    def append_add(self, index: "HashIndex", ids) -> None:
        """Record the images ``ids`` (already added to ``index``) with their codes and metadata."""
        self._append(OP_ADD, _add_payload(index, np.asarray(ids, dtype=np.int64).ravel()))

    def append_remove(self, ids) -> None:
        self._append(OP_REMOVE, np.asarray(ids, dtype="<i8").ravel().tobytes())

    def discard(self) -> None:
        """Delete the journal (after its changes were written into a new index file)."""
        if self.path.exists():
            self.path.unlink()
        self.good_bytes = None
