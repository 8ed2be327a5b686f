"""Issue 12 item 10: a journal record failing its checksum with intact records after it is
corruption, not an interrupted append: the later records are never dropped silently; writes are
refused (saying so) until the user restores or moves the journal aside."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from deephash.errors import IndexFormatError
from deephash.index.hash_index import HashIndex
from deephash.index.journal import _HEAD, _REC


def _index_with_three_records(tmp_path):
    rng = np.random.default_rng(1)
    ix = HashIndex(32, searcher="numpy")
    ix.add(rng.integers(0, 256, (10, 4), dtype=np.uint8), labels=rng.integers(0, 2, 10))
    path = ix.save(tmp_path / "j.dhi")
    added = []
    for _ in range(3):
        new = ix.add(rng.integers(0, 256, (1, 4), dtype=np.uint8), labels=[1])
        ix.log_added(new)
        added.append(int(new[0]))
    return path, path.with_name("j.dhi.journal"), added


@pytest.mark.parametrize("where", ["payload", "length", "tag", "crc"])
def test_damage_in_the_first_record_keeps_the_later_ones(tmp_path, caplog, where):
    path, journal, added = _index_with_three_records(tmp_path)
    data = bytearray(journal.read_bytes())
    first = _HEAD.size
    (_, _, n) = _REC.unpack_from(data, first)
    pos = {"payload": first + _REC.size + 5, "length": first + 5, "tag": first + 1,
           "crc": first + _REC.size + n + 1}[where]
    data[pos] ^= 0x5A
    journal.write_bytes(bytes(data))
    before = bytes(data)
    with caplog.at_level(logging.WARNING):
        back = HashIndex.load(path)
    msg = caplog.text
    assert "interrupted append" not in msg
    assert "2 intact record(s) follow" in msg
    assert added[0] not in back.ids  # the damaged record is not applied ...
    # ... and nothing that would drop the later records is allowed
    more = back.add(np.zeros((1, 4), np.uint8), labels=[0])
    with pytest.raises(IndexFormatError, match="refus") as e:
        back.log_added(more)
    assert "\n" not in str(e.value) and str(journal) in str(e.value)
    with pytest.raises(IndexFormatError, match="refus"):
        back.save(path)
    assert journal.read_bytes() == before  # the later records are still there


def test_damage_in_the_last_record_is_an_interrupted_append(tmp_path, caplog):
    path, journal, added = _index_with_three_records(tmp_path)
    data = bytearray(journal.read_bytes())
    data[-6] ^= 0xFF
    journal.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        back = HashIndex.load(path)
    assert "interrupted append" in caplog.text
    assert added[0] in back.ids and added[1] in back.ids and added[2] not in back.ids
    back.log_removed([added[0]]) if back.remove([added[0]]) else None  # writes go on: the tail is cut off
    assert added[0] not in HashIndex.load(path).ids
