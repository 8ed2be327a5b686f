"""IDX files (the format MNIST, Fashion-MNIST, KMNIST and EMNIST come in) as an archive source.

An IDX file is a big-endian header — two zero bytes, a type code (0x08 unsigned byte, 0x09 signed
byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions — then one
uint32 per dimension and the array itself; the files are often gzip-compressed (``.gz``).

A *folder of IDX files* is a dataset when it holds an image file (``*-images-idx3-ubyte[.gz]``,
``*-images.idx3-ubyte``) and, for each, a label file beside it (``images`` → ``labels``, ``idx3`` →
``idx1``); files whose name starts with ``train`` form the 'train' split, ``t10k``/``test`` the
'test' split. :func:`idx_image_folder` writes such a dataset once into the cache as an image folder
of PNGs (``<split>/<class>/<n>.png``, atomically: a temporary folder renamed into place), so every
other part of deephash (feature extraction, the index, the service) reads it like any archive.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.errors import DataError
from deephash.utils import cache_dir, sha1_of

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGES = re.compile(r"^(?P<stem>.*?)[-_.]?images[-_.]idx3[-_.]ubyte(?P<gz>\.gz)?$", re.IGNORECASE)
_SPLITS = (("train", "train"), ("t10k", "test"), ("test", "test"))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not), in native byte order."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"{p}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{p}: not an IDX file (expected the magic bytes 00 00 <type> <ndim> with a type among "
                        f"{', '.join(f'0x{t:02X}' for t in _DTYPES)}; got {raw[:4].hex(' ') or 'an empty file'})")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{p}: IDX header announces {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - head != need:
        raise DataError(f"{p}: IDX header says shape {shape} of {dtype.name} ({need} bytes of data); "
                        f"the file holds {len(raw) - head}")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def idx_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(split, images file, labels file)`` for every image file of an IDX folder (sorted by split)."""
    folder = Path(folder)
    out = []
    for f in sorted(folder.iterdir()):
        m = _IMAGES.match(f.name)
        if not m or not f.is_file():
            continue
        lab_name = re.sub("idx3", "idx1", re.sub("images", "labels", f.name, flags=re.IGNORECASE), flags=re.IGNORECASE)
        lab = folder / lab_name
        if not lab.is_file():
            alt = folder / (lab_name[:-3] if lab_name.endswith(".gz") else lab_name + ".gz")
            if not alt.is_file():
                raise DataError(f"{f}: no label file beside it (expected {lab_name})")
            lab = alt
        stem = m.group("stem").lower()
        split = next((s for prefix, s in _SPLITS if stem.startswith(prefix)), stem or "train")
        out.append((split, f, lab))
    return out


def is_idx_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and any(_IMAGES.match(f.name) for f in p.iterdir() if f.is_file())


def _class_folder_names(class_names: Sequence[str] | None, n: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n)]
    if len(class_names) < n:
        raise DataError(f"labels go up to {n - 1} but only {len(class_names)} class names were given")
    return [re.sub(r"[^A-Za-z0-9._-]+", "-", c).strip("-").lower() or str(i) for i, c in enumerate(class_names)]


def idx_image_folder(folder: str | os.PathLike, class_names: Sequence[str] | None = None, *,
                     progress: bool = True) -> Path:
    """The IDX dataset in ``folder`` as an image folder of PNGs in the cache (written once, reused)."""
    from PIL import Image

    folder = Path(folder).expanduser()
    pairs = idx_pairs(folder)
    if not pairs:
        raise DataError(f"{folder}: no IDX image files (expected e.g. train-images-idx3-ubyte.gz with "
                        "train-labels-idx1-ubyte.gz beside it)")
    stamp = [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for _, a, b in pairs for f in (a, b)]
    dest = cache_dir() / "archives" / (folder.name + "-idx-" + sha1_of(str(folder.resolve()), stamp, class_names)[:12])
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".idx-", dir=dest.parent))
    try:
        for split, img_file, lab_file in pairs:
            images, labels = read_idx(img_file), read_idx(lab_file)
            if images.ndim not in (3, 4) or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(f"{img_file}: expected images (n, h, w) or (n, h, w, c) and n labels in {lab_file.name}; "
                                f"got {images.shape} and {labels.shape}")
            if images.ndim == 4 and images.shape[3] == 1:
                images = images[..., 0]
            if images.dtype != np.uint8:
                raise DataError(f"{img_file}: expected unsigned-byte pixels; got {images.dtype}")
            if len(labels) and labels.min() < 0:
                raise DataError(f"{lab_file}: labels must be >= 0; got {labels.min()}")
            names = _class_folder_names(class_names, int(labels.max()) + 1 if len(labels) else 0)
            if progress:
                print(f"deephash: writing {len(images)} images of {img_file.name} as PNG into {dest} — once",
                      file=sys.stderr, flush=True)
            width = len(str(max(len(images) - 1, 0)))
            for i, (img, lab) in enumerate(zip(images, labels)):
                out = tmp / split / names[int(lab)] / f"{i:0{width}d}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, dest)
    return dest
