"""ServiceState: the model and the index, loaded once, and every operation the routes perform on them.

The index is any backend of :mod:`deephash.index.backend` — a local file or
``milvus://HOST:PORT/COLLECTION`` — reached only through its interface (``snapshot()`` views for
reads, ``add``/``remove``/``persist`` for writes), so the routes and this class do not know which.

Reads run concurrently. Writes are serialised by one lock and acknowledged only after the change
is durable (``persist``): a local index appends (and fsyncs) it to its journal, rewriting the file
with the journal folded in when the journal outgrows a share of it; Milvus acknowledges an insert
once its log holds it. A failed write reopens the index (``reopen``), so memory never holds what
storage does not. Against Milvus the service holds no state of its own: several replicas behave as
one (reads are Strong: each sees every write another replica acknowledged; uploads get ids no other
replica takes; uploaded files go to a folder the replicas share, ``uploads_dir``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deephash import query as Q
from deephash.errors import ConfigError, DataError, DeepHashError
from deephash.index.backend import open_index, require_model_codes
from deephash.index.hash_index import UPLOAD_PREFIX  # uploads' index paths start with UPLOAD_PREFIX
from deephash.model import HashModel, model_path_of, require_same_model
from deephash.names import display_path  # names are bytes: shown with \xNN escapes
from deephash.service.config import ServiceConfig
from deephash.service.errors import NotFoundError, PersistError, ServiceError
from deephash.service.thumbs import ThumbnailCache, make_thumbnail
from deephash.utils import atomic_write_bytes

log = logging.getLogger("deephash.service")



class OutsideArchiveError(ServiceError):
    status = 403


def _extension_of(data: bytes) -> str:
    """File extension for an upload that already decoded (``jpg``, ``png``, ...)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").lower()
    except Exception:  # it decoded a moment ago; a name is all that is at stake
        fmt = ""
    return {"jpeg": "jpg", "": "img"}.get(fmt, fmt)


class ServiceState:
    """Holds the open index and model; the routes call its methods and never touch the index directly."""

    def __init__(self, index_path: str | Path, config: ServiceConfig, model: str | Path | None = None, *,
                 backend_options: dict[str, Any] | None = None, uploads_dir: str | Path | None = None) -> None:
        self.config = config
        self.index = open_index(index_path, **(backend_options or {}))
        self.location = self.index.location
        self.model = HashModel.load(model if model is not None else model_path_of(self.index.meta, self.location))
        require_same_model(self.index.meta, self.model, self.location)
        require_model_codes(self.index, self.model.hasher, self.location)
        root = self.index.meta.get("archive_root")
        self.archive_root = Path(root).resolve() if root else None
        self.uploads_dir = Path(uploads_dir).resolve() if uploads_dir else self.index.default_uploads_dir()
        self.thumbs = ThumbnailCache(max_items=config.thumb_cache_items, max_bytes=config.thumb_cache_bytes)
        self.internal_errors = 0
        self.started_at = time.time()
        self._write_lock = threading.Lock()  # one writer at a time, held across add/remove + persist
        self._snap_lock = threading.Lock()  # held briefly: in-memory mutation vs. taking a snapshot
        self._warm_up()

    # ------------------------------------------------------------------ helpers
    def _warm_up(self) -> None:
        """Build the backbone runtime and the searcher now, not on the first request (and not twice at once):
        one query of a grey image down the path every search takes."""
        from deephash.api import make_query

        size = self.model.backbone.preprocessing.size
        feats = self.model.backbone.embed(np.full((1, size, size, 3), 127, np.uint8))
        code = self.model.hasher.encode(feats)
        if len(self.index):
            Q.search(self.snapshot(), make_query(self.model, code, feats), 1)

    def snapshot(self):
        """The view one request reads (:class:`deephash.index.backend.IndexView`)."""
        with self._snap_lock:
            return self.index.snapshot()

    @staticmethod
    def _key(view, image_id: int) -> int:
        try:
            return view.key_of(int(image_id))
        except DataError:
            raise NotFoundError(f"unknown image id {image_id}; the index holds {len(view)} images") from None

    def _record(self, image_id: int) -> tuple[str, Any]:
        """(path, stored label) of one image; unknown ids are a 404."""
        view = self.snapshot()
        paths, labels = view.records_of(np.asarray([self._key(view, image_id)], np.int64))
        return paths[0], labels[0]

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    def label_name(self, label: Any) -> Any:
        """Stored label -> class name(s); -1 (or no class) means unlabelled and gives None."""
        return Q.label_name(self.class_names, label)

    def class_index(self, name: str) -> int:
        if not self.index.has_labels:
            raise ServiceError("this index stores no labels, so results cannot be filtered by label")
        names = self.class_names
        if name in names:
            return names.index(name)
        raise ServiceError(f"label: unknown class {name!r}; this index knows {', '.join(names)}")

    # ------------------------------------------------------------------ encoding and search
    def encode_upload(self, data: bytes, filename: str) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Upload bytes -> (code (1, K/8), feature (1, D), per-stage seconds); bad images raise DataError.
        The model's one batch-encoding path (:meth:`HashModel.encode_images`), with the service's pixel limit."""
        return self.model.encode_images([data], names=[filename], max_pixels=self.config.max_pixels)

    def stored_query(self, image_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The code and float feature the index holds for ``image_id``."""
        view = self.snapshot()
        key = np.asarray([self._key(view, image_id)], np.int64)
        return view.codes_of(key), (view.features_of(key) if view.has_features else None)

    def search(self, code: np.ndarray, feat: np.ndarray | None, timings: dict[str, float], *, k: int,
               radius: int | None, rerank: bool, label: str | None, exclude_self: bool = False,
               self_id: int | None = None) -> dict[str, Any]:
        """Run one query through :func:`deephash.query.search` and return its JSON answer."""
        from deephash.api import make_query

        if label is not None:
            self.class_index(label)  # a 400 naming the known classes
        q = make_query(self.model, code, feat, timings, self_id=self_id)
        params = {"k": k, "radius": radius, "rerank": rerank, "label": label, "exclude_self": exclude_self}
        try:
            hits = Q.search(self.snapshot(), q, k, radius=radius, label=label, rerank=rerank or None,
                            exclude_self=exclude_self)
        except ConfigError as e:
            raise ServiceError(str(e)) from None
        return Q.answer_json(hits, q, self.class_names, **params)

    # ------------------------------------------------------------------ images
    def image_info(self, image_id: int) -> dict[str, Any]:
        path, lab = self._record(image_id)
        return {"id": image_id, "label": self.label_name(lab), "path": display_path(path),
                "thumb_url": f"/api/images/{image_id}/thumb", "original_url": f"/api/images/{image_id}/original"}

    def list_images(self, offset: int, limit: int, step: int = 1) -> dict[str, Any]:
        """Up to ``limit`` images in the index's browsing order from ``offset``, every ``step``-th, with
        label, path and URLs."""
        view = self.snapshot()
        keys = view.page(offset, limit, step)
        ids = view.ids_of(keys)
        paths, labels = view.records_of(keys) if len(keys) else ([], [])
        return {"total": len(view), "offset": offset, "step": step,
                "items": [{"id": int(i), "label": self.label_name(lab), "path": display_path(p),
                           "thumb_url": f"/api/images/{int(i)}/thumb", "original_url": f"/api/images/{int(i)}/original"}
                          for i, p, lab in zip(ids, paths, labels)]}

    def _file_of(self, image_id: int, p: str) -> Path:
        if not p:
            raise NotFoundError(f"image {image_id} has no file recorded in the index")
        if p.startswith(UPLOAD_PREFIX):
            root, rel = self.uploads_dir, p[len(UPLOAD_PREFIX):]
        elif self.archive_root is not None:
            root, rel = self.archive_root, p
        else:
            raise NotFoundError("this index records no archive root, so its images cannot be served")
        root = root.resolve()
        full = (root / rel).resolve()
        if not full.is_relative_to(root):
            raise OutsideArchiveError(f"refusing to serve image {image_id}: its path {display_path(p)!r} lies outside the indexed archive")
        if not full.is_file():
            raise NotFoundError(f"the file of image {image_id} ({display_path(p)}) is missing from the archive")
        return full

    def image_file(self, image_id: int) -> Path:
        """The file behind ``image_id``, refused unless it lies inside the archive (or the uploads folder)."""
        return self._file_of(image_id, self._record(image_id)[0])

    def thumbnail(self, image_id: int, size: int) -> bytes:
        path = self._record(image_id)[0]  # checked every time: another replica may have removed the image
        key = (image_id, size, path)
        data = self.thumbs.get(key)
        if data is None:
            data = make_thumbnail(self._file_of(image_id, path), size, max_pixels=self.config.max_pixels)
            self.thumbs.put(key, data)
        return data

    # ------------------------------------------------------------------ writes
    def _labels_for(self, label: str | None) -> np.ndarray | None:
        ix = self.index
        if not ix.has_labels:
            if label is not None:
                raise ServiceError("label: this index stores no labels; add the image without one")
            return None
        if ix.multi_label:
            row = np.zeros((1, len(self.class_names)), np.uint8)
            for name in (label.split(",") if label else []):
                row[0, self.class_index(name.strip())] = 1
            return row
        return np.array([-1 if label is None else self.class_index(label)], np.int64)

    def _persist(self, added=(), removed=()) -> None:
        self.index.persist(added, removed, fold_ratio=self.config.journal_compact_ratio,
                           fold_min_bytes=self.config.journal_compact_min_bytes)

    def add_image(self, data: bytes, filename: str, label: str | None) -> dict[str, Any]:
        """Encode an upload, keep a copy in the uploads folder, add it and make it durable; returns its id."""
        code, feat, _ = self.encode_upload(data, filename)
        ext = _extension_of(data)
        with self._write_lock:
            labels = self._labels_for(label)
            name = f"{uuid.uuid4().hex}.{ext}"
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.uploads_dir / name, data)
            try:
                with self._snap_lock:
                    new_id = int(self.index.new_ids(1)[0])
                    self.index.add(code, ids=[new_id], paths=[UPLOAD_PREFIX + name], labels=labels,
                                   features=feat if self.index.has_features else None)
            except DeepHashError:  # nothing was added (e.g. the server is unreachable: a 503)
                with contextlib.suppress(OSError):
                    (self.uploads_dir / name).unlink()
                raise
            try:
                self._persist(added=[new_id])
            except Exception as e:
                self._reopen_after_failed_write()
                with contextlib.suppress(OSError):
                    (self.uploads_dir / name).unlink()
                raise PersistError(f"could not write the index ({type(e).__name__}: {e}); the image was not added") from None
        log.info("added image %d (%s, %d bytes) as %s", new_id, filename, len(data), name)
        return {"id": new_id, **self.image_info(new_id), "count": len(self.index)}

    def remove_image(self, image_id: int) -> dict[str, Any]:
        """Remove one image and make it durable; an uploaded file is deleted once the index no longer names it."""
        with self._write_lock:
            path = self._record(image_id)[0]
            with self._snap_lock:
                self.index.remove([image_id])
            try:
                self._persist(removed=[image_id])
            except Exception as e:
                self._reopen_after_failed_write()
                raise PersistError(f"could not write the index ({type(e).__name__}: {e}); image {image_id} was not removed") from None
            self.thumbs.drop(lambda key: key[0] == image_id)
            if path.startswith(UPLOAD_PREFIX):
                with contextlib.suppress(OSError):
                    (self.uploads_dir / path[len(UPLOAD_PREFIX):]).unlink()
        log.info("removed image %d", image_id)
        return {"id": image_id, "removed": True, "count": len(self.index)}

    def _reopen_after_failed_write(self) -> None:
        log.error("index write failed; reopening %s", self.location)
        fresh = self.index.reopen()
        with self._snap_lock:
            self.index = fresh

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, Any]:
        ix = self.index
        bb = ix.meta.get("backbone") or self.model.backbone.describe()
        facts = ix.stats()
        ident = ix.meta.get("model_identity") or {"method": ix.meta.get("method", self.model.hasher.name),
                                                   "bits": ix.n_bits, "digest": None}
        return {
            "count": len(ix), "bits": ix.n_bits, "method": ident["method"], "model": {**ident, "file": ix.meta.get("model")},
            "backbone": bb, "image_size": self.model.backbone.preprocessing.size,
            "has_features": ix.has_features, "has_labels": ix.has_labels, "class_names": self.class_names,
            "per_class": facts["per_class"], "uploaded": facts["uploaded"], "searcher": facts["searcher"],
            "code_kind": ix.code_kind, "index_file": facts["index_file"], "journal_bytes": facts["journal_bytes"],
            "backend": facts["backend"], "search": facts.get("search"),
            "limits": {"max_k": self.config.max_k, "max_upload_bytes": self.config.max_upload_bytes,
                       "max_pixels": self.config.max_pixels},
            "auth": {"writes_enabled": self.config.api_key is not None, "read_key_required": self.config.read_key_required},
            "thumbnail_cache": {"items": len(self.thumbs), "bytes": self.thumbs.nbytes, "hits": self.thumbs.hits,
                                "misses": self.thumbs.misses},
            "internal_errors": self.internal_errors,
            "uptime_s": round(time.time() - self.started_at, 1),
        }
