"""Safe image decoding: every failure becomes a DataError that names the file and the reason."""
from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deephash.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
#: Images declaring more pixels than this are refused (decompression bombs).
MAX_PIXELS = 89_478_485


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


def decode_image(data: bytes | str | Path, *, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes or a file into an RGB PIL image; raises :class:`DataError` on anything not a whole image."""
    label = name or (str(data) if not isinstance(data, bytes) else "upload")
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
                if w * h > max_pixels:
                    raise DataError(f"{label}: image declares {w}x{h} pixels, more than the limit of {max_pixels}")
                im.load()  # forces a full decode: truncated files fail here
                return im.convert("RGB")
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label}: not a readable image (not a format PIL can identify)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{label}: not a readable image ({type(e).__name__}: {e})") from None
    except Exception as e:  # a parser boundary: PIL's decoders raise many kinds on hostile bytes
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(f"{label}: corrupt or truncated image ({why})") from None


def load_rgb(path: str | Path, size: int) -> np.ndarray:
    """Decode and resize to ``size x size`` (bilinear); returns ``uint8 (size, size, 3)``."""
    im = decode_image(path)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
