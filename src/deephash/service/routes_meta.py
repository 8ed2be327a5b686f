"""The page, /health and index statistics."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from deephash.service.auth import require_read_key
from deephash.service.schemas import ERRORS, Health

STATIC_DIR = Path(__file__).with_name("static")


def meta_router() -> APIRouter:
    r = APIRouter(responses=ERRORS)

    @r.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @r.get("/health", response_model=Health, tags=["meta"], summary="Liveness: the index is loaded and answering")
    def health(request: Request) -> dict:
        ix = request.app.state.service.index
        return {"status": "ok", "count": len(ix), "bits": ix.n_bits}

    @r.get("/api/stats", tags=["meta"], dependencies=[Depends(require_read_key)],
           summary="Index statistics: count, bits, backbone, method, classes, limits")
    def stats(request: Request) -> dict:
        return request.app.state.service.stats()

    return r
