"""Images of the index: metadata, thumbnails, originals (reads); adding and removing (writes, keyed)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from deephash.service.auth import require_read_key, require_write_key
from deephash.service.config import ServiceConfig
from deephash.service.routes_search import INT64_MAX
from deephash.service.schemas import ERRORS, AddAnswer, ImageInfo, ImageList, RemoveAnswer
from deephash.service.uploads import read_upload

ImageId = Path(ge=0, le=INT64_MAX, description="id of an indexed image")


def images_router(cfg: ServiceConfig) -> APIRouter:
    reads = APIRouter(prefix="/api/images", tags=["images"], dependencies=[Depends(require_read_key)], responses=ERRORS)
    writes = APIRouter(prefix="/api/images", tags=["write"], dependencies=[Depends(require_write_key)], responses=ERRORS)

    @reads.get("", response_model=ImageList, summary="Page through the ids in the index")
    def list_images(request: Request, offset: int = Query(0, ge=0), limit: int = Query(24, ge=1, le=1000),
                    step: int = Query(1, ge=1, description="every step-th image (a spread over the index)")) -> dict:
        return request.app.state.service.list_images(offset, limit, step)

    @reads.get("/{image_id}", response_model=ImageInfo, summary="Label and path of an indexed image")
    def image_info(request: Request, image_id: int = ImageId) -> dict:
        return request.app.state.service.image_info(image_id)

    @reads.get("/{image_id}/thumb", summary="JPEG thumbnail (cached in memory)",
               responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(request: Request, image_id: int = ImageId,
                  size: int = Query(cfg.thumb_size, ge=16, le=512, description="longest side in pixels")) -> Response:
        data = request.app.state.service.thumbnail(image_id, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @reads.get("/{image_id}/original", summary="The original file, served only from inside the archive")
    def original(request: Request, image_id: int = ImageId) -> FileResponse:
        return FileResponse(request.app.state.service.image_file(image_id))

    @writes.post("", response_model=AddAnswer, status_code=201, summary="Add an image (saved before the answer)")
    def add_image(request: Request, file: UploadFile | None = File(None, description="the image to add"),
                  label: str | None = Form(None, description="its class name (comma-separated for multi-label)")) -> dict:
        data, name = read_upload(file, cfg.max_upload_bytes)
        return request.app.state.service.add_image(data, name, label or None)

    @writes.delete("/{image_id}", response_model=RemoveAnswer, summary="Remove an image (saved before the answer)")
    def remove_image(request: Request, image_id: int = ImageId) -> dict:
        return request.app.state.service.remove_image(image_id)

    return reads, writes
