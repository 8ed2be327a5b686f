"""``create_app(index_path, ...)``: the FastAPI application behind ``deephash serve``.

The model and the index are loaded once, here; the routes live in ``routes_*.py``, the work
in :class:`~deephash.service.state.ServiceState`, the page in ``static/``.
"""
from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deephash import __version__
from deephash.data.images import max_pixels_limit
from deephash.service.config import DEFAULT_MAX_UPLOAD_BYTES, ServiceConfig
from deephash.service.errors import install_error_handlers
from deephash.service.limits import BodySizeLimit
from deephash.service.routes_images import images_router
from deephash.service.routes_meta import STATIC_DIR, meta_router
from deephash.service.routes_search import search_router
from deephash.service.state import ServiceState

#: Room for multipart boundaries and small form fields on top of the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def create_app(index_path: str | os.PathLike, *, api_key: str | None = None, read_key_required: bool = False,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int | None = None,
               max_k: int = 1000, backend_options: dict | None = None, uploads_dir: str | os.PathLike | None = None) -> FastAPI:
    """Load the index (a file or ``milvus://HOST:PORT/COLLECTION``; ``backend_options`` such as ``token``)
    and its model and return the app (raises DeepHashError if either cannot be used). ``uploads_dir``:
    where added images are kept (replicas of a Milvus-backed service share one). ``max_pixels``: the
    shared limit (``$DEEPHASH_MAX_PIXELS`` or 40 MP) unless given."""
    cfg = ServiceConfig(api_key=api_key, read_key_required=read_key_required, max_upload_bytes=max_upload_bytes,
                        max_pixels=max_pixels_limit() if max_pixels is None else max_pixels, max_k=max_k)
    state = ServiceState(index_path, cfg, backend_options=backend_options, uploads_dir=uploads_dir)
    app = FastAPI(title="deephash", version=__version__,
                  description="Content-based image retrieval with deep hashing: search an index by image or by id, "
                              "browse thumbnails, add and remove images (writes need the API key).")
    app.state.service = state
    install_error_handlers(app)
    app.include_router(meta_router())
    app.include_router(search_router(cfg))
    for r in images_router(cfg):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, limit=cfg.max_upload_bytes + FORM_OVERHEAD_BYTES)
    return app
