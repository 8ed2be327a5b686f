"""Reading a checkpoint file safely: every damaged or foreign file is one :class:`IndexFormatError` line.

A checkpoint is PyTorch's zip format (``torch.save``), loaded with ``weights_only=True`` (no code
runs). Before anything is unpickled the file must be a zip whose members pass their CRC-32 (a
truncated, empty, text or random file is named as such); after, its payload (config and state)
must match the SHA-256 written beside it on save (:func:`payload_digest`), so a flipped byte in
the weights is refused instead of silently changing the codes. Checkpoints written before the
checksum existed still load (the zip CRCs are their only check).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from deephash.errors import IndexFormatError

CHECKPOINT_FORMAT = "deephash-checkpoint"
CHECKPOINT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"


def _feed(h: "hashlib._Hash", v: Any) -> None:
    """Hash a value of a checkpoint's config or state canonically (type, shape and bytes of arrays)."""
    import numpy as np

    if hasattr(v, "detach") and hasattr(v, "dtype"):  # a torch tensor
        import torch

        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{v.dtype}{tuple(v.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(v, np.ndarray):
        h.update(f"A{v.dtype.str}{v.shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    elif isinstance(v, dict):
        h.update(f"D{len(v)}".encode())
        for k in sorted(v, key=repr):
            _feed(h, k)
            _feed(h, v[k])
    elif isinstance(v, (list, tuple)):
        h.update(f"L{len(v)}".encode())
        for x in v:
            _feed(h, x)
    else:
        h.update(f"{type(v).__name__}:{v!r};".encode())


def payload_digest(config: dict[str, Any], state: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a checkpoint's config and state, as written on save and checked on load."""
    h = hashlib.sha256()
    _feed(h, {"config": config, "state": state})
    return "sha256:" + h.hexdigest()


def _what_it_is(head: bytes) -> str:
    if not head:
        return "the file is empty (0 bytes)"
    try:
        head.decode("utf-8")
        return "it is a text file"
    except UnicodeDecodeError:
        return f"it starts with bytes {head[:8].hex(' ')}"


def _check_container(path: Path) -> None:
    """The zip layer: magic, central directory, per-member CRC-32."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head.startswith(ZIP_MAGIC):
        raise IndexFormatError(f"{path}: not a deephash checkpoint (a PyTorch zip file, starting 'PK'): {_what_it_is(head)}")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise IndexFormatError(f"{path}: the checkpoint is truncated or damaged (its zip container cannot be read: {e})") from None
    if bad is not None:
        raise IndexFormatError(f"{path}: the checkpoint is damaged (member {bad!r} fails its CRC check); "
                               "restore it from a copy or train it again")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``{"format", "version", "config", "state"[, "checksum"]}``, verified; else IndexFormatError."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise IndexFormatError(f"checkpoint {str(path)!r} does not exist" if not path.exists()
                               else f"checkpoint {str(path)!r} is not a file")
    _check_container(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise IndexFormatError(f"{path}: the checkpoint is damaged or not a deephash file (its payload holds objects "
                               "a deephash checkpoint never holds)") from None
    except Exception as e:  # torch raises many kinds on damaged input; none may reach the user as a traceback
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise IndexFormatError(f"{path}: the checkpoint is damaged and cannot be read ({type(e).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise IndexFormatError(f"{path}: not a deephash checkpoint (no '{CHECKPOINT_FORMAT}' tag): a PyTorch file of something else")
    version = blob.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise IndexFormatError(f"{path}: checkpoint version {version!r} is newer than this deephash reads ({CHECKPOINT_VERSION})")
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("state"), dict):
        raise IndexFormatError(f"{path}: the checkpoint lacks its config or state (a damaged or hand-made file)")
    want = blob.get("checksum")
    if want is not None and payload_digest(blob["config"], blob["state"]) != want:
        raise IndexFormatError(f"{path}: the checkpoint's weights or config do not match the checksum written with them "
                               "(the file was damaged after it was saved); restore it from a copy or train it again")
    return blob
