"""Reading an uploaded file with the size limit applied; empty and missing uploads say so."""
from __future__ import annotations

from fastapi import UploadFile

from deephash.service.errors import ServiceError, UploadTooLargeError


def read_upload(file: UploadFile | None, limit: int) -> tuple[bytes, str]:
    """The bytes and the file name of the multipart field ``file``, at most ``limit`` bytes."""
    if file is None:
        raise ServiceError("file: no image uploaded; send it as the multipart/form-data field 'file'")
    name = file.filename or "upload"
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(f"{name}: the upload is larger than the limit of {limit} bytes")
    if not data:
        raise ServiceError(f"{name}: the upload is empty (0 bytes); expected an image")
    return data, name
