"""Search endpoints: by uploaded image, or by the id of an indexed image."""
from __future__ import annotations

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile

from deephash.service.auth import require_read_key
from deephash.service.config import ServiceConfig
from deephash.service.schemas import ERRORS, SearchAnswer
from deephash.service.uploads import read_upload

INT64_MAX = 2**63 - 1


def search_router(cfg: ServiceConfig) -> APIRouter:
    r = APIRouter(prefix="/api", tags=["search"], dependencies=[Depends(require_read_key)], responses=ERRORS)

    def params(
        k: int = Query(10, ge=1, le=cfg.max_k, description=f"number of neighbours, 1..{cfg.max_k}"),
        radius: int | None = Query(None, ge=0, description="only results within this Hamming distance (0..bits)"),
        rerank: bool = Query(False, description="DLBHC coarse-to-fine: the Hamming pool re-ranked by float features"),
        label: str | None = Query(None, min_length=1, description="only results of this class"),
        exclude_self: bool = Query(False, description="leave the query image itself out (\"more like this\")"),
    ) -> dict:
        return {"k": k, "radius": radius, "rerank": rerank, "label": label, "exclude_self": exclude_self}

    @r.post("/search", response_model=SearchAnswer, summary="Search with an uploaded image")
    def search_upload(request: Request, file: UploadFile | None = File(None, description="the query image"),
                      p: dict = Depends(params)) -> dict:
        svc = request.app.state.service
        data, name = read_upload(file, cfg.max_upload_bytes)
        code, feat, timings = svc.encode_upload(data, name)
        return svc.search(code, feat, timings, **p)

    @r.get("/search/{image_id}", response_model=SearchAnswer, summary="Search with an indexed image")
    def search_by_id(request: Request, image_id: int = Path(ge=0, le=INT64_MAX), p: dict = Depends(params)) -> dict:
        svc = request.app.state.service
        code, feat = svc.stored_query(image_id)
        return {**svc.search(code, feat, {}, self_id=image_id, **p), "query_id": image_id}

    return r
