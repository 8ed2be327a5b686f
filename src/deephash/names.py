"""File names as Linux has them: bytes. deephash holds a name as a ``str`` decoded with
``os.fsdecode`` (undecodable bytes become lone surrogates, ``surrogateescape``), stores it
losslessly as the original bytes (:func:`name_bytes`), and shows it readably (:func:`display_path`)."""
from __future__ import annotations

import os

_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def name_bytes(name: str) -> bytes:
    """The file name's original bytes (``os.fsencode``)."""
    return os.fsencode(name)


def name_from_bytes(raw: bytes) -> str:
    """The ``str`` form of a file name's bytes (``os.fsdecode``); ``name_bytes`` inverts it."""
    return os.fsdecode(raw)


def names_from_nul_bytes(raw: bytes) -> list[str]:
    """Many file names stored as NUL-separated bytes -> their ``str`` forms (:func:`name_from_bytes` of each).

    On a UTF-8 file system (``os.fsdecode`` is UTF-8 with ``surrogateescape``) the whole buffer is decoded
    at once: a NUL is never part of a multi-byte sequence, so this equals decoding name by name, without a
    Python call and a bytes object per name (at 10^7 names: seconds and hundreds of MB).
    """
    import sys

    if sys.getfilesystemencoding().lower().replace("-", "") == "utf8" and sys.getfilesystemencodeerrors() == "surrogateescape":
        return raw.decode("utf-8", "surrogateescape").split("\0")
    return [name_from_bytes(b) for b in raw.split(b"\0")]


def names_to_nul_bytes(names: list[str]) -> bytes:
    """Inverse of :func:`names_from_nul_bytes`: the names' bytes (:func:`name_bytes` of each) joined by NUL."""
    import sys

    if sys.getfilesystemencoding().lower().replace("-", "") == "utf8" and sys.getfilesystemencodeerrors() == "surrogateescape":
        return "\0".join(names).encode("utf-8", "surrogateescape")
    return b"\0".join(name_bytes(p) for p in names)


def display_path(name: str) -> str:
    """A printable, valid-UTF-8 form of a file name: bytes that are not UTF-8 as ``\\xNN``, control
    characters (newline, tab, ...) escaped; every other character as it is."""
    if _has_surrogates(name):
        try:
            text = name_bytes(name).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate no file-name byte decodes to (e.g. from JSON)
            text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        text = name
    return text.translate(_CONTROL)


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
