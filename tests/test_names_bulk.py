"""Bulk file-name decoding/encoding used by the index file equals the name-by-name functions."""
import numpy as np

from deephash.names import name_bytes, name_from_bytes, names_from_nul_bytes, names_to_nul_bytes


def test_bulk_decode_and_encode_equal_name_by_name():
    rng = np.random.default_rng(0)
    raw_names = [b"", b"a.jpg", "sn\u00f8/\u732b.png".encode(), b"\xff\xfe bad", b"cut \xe2\x82", b"\xe2\x82\xac", b"x\x80",
                 b"\xf0\x9f\x98", b"\xc3"]
    raw_names += [bytes(rng.integers(1, 256, rng.integers(0, 12), dtype=np.uint8)) for _ in range(500)]  # no NULs
    raw = b"\0".join(raw_names)
    want = [name_from_bytes(b) for b in raw_names]
    assert names_from_nul_bytes(raw) == want
    assert names_to_nul_bytes(want) == raw == b"\0".join(name_bytes(s) for s in want)
    assert names_from_nul_bytes(b"") == [""]
