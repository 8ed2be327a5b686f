"""Safe image decoding: every failure becomes a DataError that names the file and the reason."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deephash.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
#: Images declaring more pixels than this are refused (decompression bombs).
MAX_PIXELS = 89_478_485


def decode_image(data: bytes | str | Path, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
                 draft_size: int | None = None) -> Image.Image:
    """Decode bytes or a file into an RGB PIL image; raises :class:`DataError` on anything not a whole image.

    ``draft_size``: a JPEG at least twice that size on both sides is decoded at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling, :meth:`PIL.Image.Image.draft`), the largest reduction that keeps both
    sides >= ``draft_size``; other images decode at full size, exactly as without it."""
    label = name or (str(data) if not isinstance(data, bytes) else "upload")
    try:
        if isinstance(data, bytes):
            if not data:
                raise DataError(f"{label}: empty file (expected an image)")
            src = io.BytesIO(data)
        else:
            p = Path(data)
            if p.stat().st_size == 0:
                raise DataError(f"{label}: empty file (expected an image)")
            src = p
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise DataError(f"{label}: image declares {w}x{h} pixels, more than the limit of {max_pixels}")
                if draft_size and w >= 2 * draft_size and h >= 2 * draft_size:
                    im.draft(None, (draft_size, draft_size))  # JPEG only; a no-op for other formats
                im.load()  # forces a full decode: truncated files fail here
                return im.convert("RGB")
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label}: not a readable image (not a format PIL can identify)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{label}: not a readable image ({type(e).__name__}: {e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{label}: corrupt or truncated image ({e})") from None


def load_rgb(path: str | Path | bytes, size: int, *, draft: bool = False, name: str | None = None,
             max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode and resize to ``size x size`` (bilinear); returns ``uint8 (size, size, 3)``.

    ``draft``: large JPEGs are decoded at a reduced scale close to ``size`` first (see :func:`decode_image`)."""
    im = decode_image(path, name=name, max_pixels=max_pixels, draft_size=size if draft else None)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
