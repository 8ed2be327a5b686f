"""Response models: they document the API in /openapi.json and pin the shape of every answer."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorAnswer(BaseModel):
    detail: str = Field(description="what was wrong with the request, in one line")


class Hit(BaseModel):
    rank: int
    id: int
    hamming: int | None = Field(None, description="Hamming distance between the query code and this image's code "
                                                  "(null for a PQ / DPQ index)")
    distance: float | None = Field(None, description="asymmetric distance of the query's features to this image's "
                                                     "quantisation code (PQ / DPQ indexes only)")
    feature_distance: float | None = Field(None, description="Euclidean distance of float features: what a re-rank "
                                                             "ranked by, and what orders a Hamming tie when the index stores features")
    label: Any = Field(None, description="class name (a list for multi-label indexes); null when unlabelled")
    path: str = Field(description="path inside the archive, or @uploads/<file> for an added image")
    thumb_url: str
    original_url: str


class StageTimings(BaseModel):
    decode: float | None = None
    backbone: float | None = None
    hash: float | None = None
    search: float | None = None
    rerank: float | None = None
    total: float


class RerankPool(BaseModel):
    size: int
    radius: int


class SearchAnswer(BaseModel):
    results: list[Hit]
    count: int
    params: dict[str, Any]
    timings_ms: StageTimings = Field(description="per-stage milliseconds; null for a stage that did not run")
    code: str = Field(description="the query's packed code in hex")
    ranked_by: str = Field(description="what the order of the results follows")
    rerank_pool: RerankPool | None = None
    k_capped_at: int | None = Field(None, description="k was larger than the index: the number of images it holds")
    search: dict[str, Any] | None = Field(None, description="how the index searched: exact, or a FAISS structure with its "
                                                          "parameters (exact: false, answers may miss neighbours)")
    query_id: int | None = None


class ImageInfo(BaseModel):
    id: int
    label: Any = None
    path: str
    thumb_url: str
    original_url: str


class ImageList(BaseModel):
    total: int
    offset: int
    step: int
    items: list[ImageInfo]


class AddAnswer(ImageInfo):
    count: int = Field(description="images in the index after the write")


class RemoveAnswer(BaseModel):
    id: int
    removed: bool
    count: int


class Health(BaseModel):
    status: str
    count: int
    bits: int


ERRORS = {code: {"model": ErrorAnswer} for code in (400, 401, 403, 404, 413, 422)}
