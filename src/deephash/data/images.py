"""Safe image decoding: every failure becomes a DataError that names the file and the reason."""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deephash.errors import DataError
from deephash.utils import limit_from_env

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
#: Images declaring more pixels than this are refused before they are decoded (decompression bombs):
#: the one limit of the command line, the Python API and the service. 40 MP decodes to at most
#: ~160 MB (4 bytes a pixel), plus one RGB copy (~120 MB). ``DEEPHASH_MAX_PIXELS`` overrides it;
#: ``deephash serve --max-pixels`` overrides it for the service.
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "DEEPHASH_MAX_PIXELS"


def max_pixels_limit() -> int:
    """The pixel limit in force: ``$DEEPHASH_MAX_PIXELS`` when set, else :data:`DEFAULT_MAX_PIXELS`."""
    return limit_from_env(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, unit="pixels", ceiling_exp=31)


def _open_file(p: Path, label: str):
    """Open an image file for reading; a missing file, a folder, a pipe or an unreadable file is a
    DataError that says so (not "corrupt image"). A pipe is never opened (it would block)."""
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{label}: no such file") from None
    except OSError as e:
        raise DataError(f"{label}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{label}: a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{label}: not a regular file (a pipe, socket or device), not an image file")
    if st.st_size == 0:
        raise DataError(f"{label}: empty file (expected an image)")
    try:
        return open(p, "rb")
    except OSError as e:
        raise DataError(f"{label}: cannot be read ({e.strerror or e})") from None


def decode_image(data: bytes | str | Path, *, name: str | None = None, max_pixels: int | None = None,
                 draft_size: int | None = None) -> Image.Image:
    """Decode bytes or a file into an RGB PIL image; raises :class:`DataError` on anything not a whole image.

    An image declaring more than ``max_pixels`` (default: :func:`max_pixels_limit`) is refused from
    its header, before any pixel is decoded. ``draft_size``: a JPEG at least twice that size on both
    sides is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, :meth:`PIL.Image.Image.draft`),
    the largest reduction that keeps both sides >= ``draft_size``; other images decode at full size,
    exactly as without it."""
    label = name or (str(data) if not isinstance(data, bytes) else "upload")
    limit = max_pixels_limit() if max_pixels is None else int(max_pixels)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # PIL's own bomb check must not undercut the configured limit
    try:
        if isinstance(data, bytes):
            if not data:
                raise DataError(f"{label}: empty file (expected an image)")
            src = io.BytesIO(data)
        else:
            src = _open_file(Path(data), label)
        with src, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w * h > limit:
                    raise DataError(f"{label}: image declares {w}x{h} pixels, more than the limit of {limit} "
                                    f"(${MAX_PIXELS_ENV} raises it)")
                if draft_size and w >= 2 * draft_size and h >= 2 * draft_size:
                    im.draft(None, (draft_size, draft_size))  # JPEG only; a no-op for other formats
                im.load()  # forces a full decode: truncated files fail here
                return im.convert("RGB")
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label}: not a readable image (not a format PIL can identify)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # PIL's check, inside open()
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = f"{int(m.group(1))} pixels" if m else "more pixels"
        raise DataError(f"{label}: image declares {n}, more than the limit of {limit} (${MAX_PIXELS_ENV} raises it)") from None
    except Exception as e:  # a parser boundary: PIL's decoders raise many kinds on hostile bytes
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(f"{label}: corrupt or truncated image ({why})") from None


def load_rgb(path: str | Path | bytes, size: int, *, draft: bool = False, name: str | None = None,
             max_pixels: int | None = None) -> np.ndarray:
    """Decode and resize to ``size x size`` (bilinear); returns ``uint8 (size, size, 3)``.

    ``draft``: large JPEGs are decoded at a reduced scale close to ``size`` first (see :func:`decode_image`)."""
    im = decode_image(path, name=name, max_pixels=max_pixels, draft_size=size if draft else None)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
