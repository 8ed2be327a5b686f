"""Small shared helpers: atomic writes, the cache folder, seeding, timing."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from deephash.errors import ConfigError, OutputError


def cache_dir() -> Path:
    """The folder where unpacked datasets and feature caches live (``DEEPHASH_CACHE`` overrides)."""
    root = os.environ.get("DEEPHASH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "deephash"
    )
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p



def limit_from_env(name: str, default: int, *, unit: str, ceiling_exp: int) -> int:
    """A positive whole-number limit from the environment variable ``name`` (``_`` allowed as a digit
    separator), else ``default``; anything else is a one-line :class:`ConfigError`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw.replace("_", ""))
    except ValueError:
        v = 0
    if not 1 <= v <= 2**ceiling_exp:
        raise ConfigError(f"{name} must be a whole number of {unit} between 1 and 2^{ceiling_exp}; got {raw!r}")
    return v

#: errno values of a write that failed for lack of room or a read-only disk (reported as OutputError)
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _output_error(path: Path, e: OSError) -> OutputError:
    """One line naming the output path and why it cannot be written."""
    why = e.strerror or type(e).__name__
    parent = path.parent
    if isinstance(e, (NotADirectoryError, FileExistsError)) and not parent.is_dir():
        what = f"a part of its folder path is a file, not a folder ({e.filename or parent})"
    elif not parent.is_dir():
        what = f"its folder {parent} cannot be made ({why})"
    elif e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
        what = f"its folder {parent} does not accept new files ({why})"
    else:
        what = why
    return OutputError(f"cannot write {path}: {what}")


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, in one line, when ``path`` cannot be written, rather than after the work that makes it:
    a folder at that path, a folder that cannot be made, or one this process may not write to."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _output_error(path, e) from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A path that cannot be written (or a full or read-only disk) raises :class:`OutputError`, one line."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as e:
        raise _output_error(path, e) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError) and e.errno in _DISK_ERRNOS:
            raise _output_error(path, e) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (when installed)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def sha1_of(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=_json_default).encode())
        h.update(b"\x00")
    return h.hexdigest()


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start
