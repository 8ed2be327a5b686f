"""The journal's head carries a checksum (format 2): a flipped bit in the token that names the index
file the records extend is refused in one line, never taken for an older journal whose records are
then silently ignored (and deleted by the next save). Format-1 journals are still read."""
from __future__ import annotations

import numpy as np
import pytest

from deephash.errors import IndexFormatError
from deephash.index import HashIndex
from deephash.index import journal as J
from index_craft import small_index


@pytest.fixture()
def journalled(tmp_path):
    p = small_index(tmp_path / "i.dhi", n=4)
    ix = HashIndex.load(p)
    ids = ix.add(np.full((2, 2), 7, np.uint8), paths=["a.jpg", "b.jpg"], labels=np.zeros(2, np.int64),
                 features=np.zeros((2, 4), np.float32))
    ix.log_added(ids)
    return p, J.journal_path(p).read_bytes(), sorted(ix.ids.tolist())


def test_the_head_is_written_with_its_checksum(journalled):
    _, data, _ = journalled
    magic, version, token, crc = J._HEAD.unpack_from(data, 0)
    assert magic == J.JOURNAL_MAGIC and version == 2
    import zlib

    assert crc == zlib.crc32(data[:28]) & 0xFFFFFFFF


@pytest.mark.parametrize("offset", [8, 12, 20, 27, 28, 31])  # version, token (first, middle, last byte), crc
def test_a_flipped_head_byte_is_refused_not_ignored(journalled, offset):
    p, data, _ = journalled
    bad = bytearray(data)
    bad[offset] ^= 0x04
    J.journal_path(p).write_bytes(bytes(bad))
    with pytest.raises(IndexFormatError) as e:
        HashIndex.load(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert ("head is damaged" in msg and "move it aside" in msg) or "newer deephash" in msg
    assert J.journal_path(p).read_bytes() == bytes(bad)  # nothing deleted


def test_format_1_journals_still_load(journalled):
    p, data, ids = journalled
    _, _, token, _ = J._HEAD.unpack_from(data, 0)
    old = J._HEAD_V1.pack(J.JOURNAL_MAGIC, 1, token) + data[J._HEAD.size:]
    J.journal_path(p).write_bytes(old)
    ix = HashIndex.load(p)
    assert sorted(ix.ids.tolist()) == ids
    more = ix.add(np.full((1, 2), 9, np.uint8), paths=["c.jpg"], labels=np.zeros(1, np.int64),
                  features=np.zeros((1, 4), np.float32))
    ix.log_added(more)  # appends to the format-1 journal
    assert sorted(HashIndex.load(p).ids.tolist()) == sorted(ids + more.tolist())


def test_a_stale_journal_of_an_older_index_is_still_ignored(journalled, tmp_path):
    """The legitimate case the token exists for: the index was rewritten, the journal not yet deleted."""
    p, data, ids = journalled
    ix = HashIndex.load(p)
    ix.save(p)  # folds the journal in and deletes it
    J.journal_path(p).write_bytes(data)  # the old journal comes back, intact: it names the old token
    assert sorted(HashIndex.load(p).ids.tolist()) == ids
