"""ServiceState: the model and the index, loaded once, and every operation the routes perform on them.

Reads run concurrently. Writes are serialised by one lock and acknowledged only after the
change is on disk: appended (and fsync'ed) to the index's journal, so a write costs a small
record, not a rewrite of the whole index file; when the journal outgrows a share of the index
file, the index is rewritten atomically with the journal folded in. A failed write reloads the
index from disk (file + journal), so memory never holds what the disk does not.
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
from deephash.errors import ConfigError, DataError
from deephash.index import HashIndex
from deephash.index.hash_index import UPLOAD_PREFIX, IndexSnapshot  # uploads' index paths start with UPLOAD_PREFIX
from deephash.model import HashModel, model_path_of, require_same_model
from deephash.names import display_path  # names are bytes: shown with \xNN escapes
from deephash.service.config import ServiceConfig
from deephash.service.errors import NotFoundError, PersistError, ServiceError
from deephash.service.thumbs import ThumbnailCache, make_thumbnail
from deephash.utils import Timer, atomic_write_bytes

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

    def __init__(self, index_path: str | Path, config: ServiceConfig, model: str | Path | None = None) -> None:
        self.config = config
        self.index_path = Path(index_path).resolve()
        self.index = HashIndex.load(self.index_path)
        self.model = HashModel.load(model if model is not None else model_path_of(self.index.meta, self.index_path))
        require_same_model(self.index.meta, self.model, self.index_path)
        if self.index.code_kind != self.model.hasher.code_kind:
            raise ConfigError(f"{self.index_path} holds {self.index.code_kind!r} codes but its model makes "
                              f"{self.model.hasher.code_kind!r} codes")
        if self.model.hasher.n_bits != self.index.n_bits:
            raise ConfigError(f"the model makes {self.model.hasher.n_bits}-bit codes but the index holds {self.index.n_bits}-bit codes")
        root = self.index.meta.get("archive_root")
        self.archive_root = Path(root).resolve() if root else None
        self.uploads_dir = self.index_path.with_name(self.index_path.name + ".uploads")
        self.thumbs = ThumbnailCache(max_items=config.thumb_cache_items, max_bytes=config.thumb_cache_bytes)
        self.internal_errors = 0
        self.started_at = time.time()
        self._write_lock = threading.Lock()  # one writer at a time, held across add/remove + save
        self._snap_lock = threading.Lock()  # held briefly: in-memory mutation vs. taking a snapshot
        self._warm_up()

    # ------------------------------------------------------------------ helpers
    def _warm_up(self) -> None:
        """Build the backbone runtime and the searcher now, not on the first request (and not twice at once)."""
        size = self.model.backbone.preprocessing.size
        feats = self.model.backbone.embed(np.full((1, size, size, 3), 127, np.uint8))
        self.model.hasher.encode(feats)
        if len(self.index) and self.index.code_kind == "hamming":
            self.index.search(self.index.codes[:1], 1)

    def snapshot(self) -> IndexSnapshot:
        with self._snap_lock:
            return self.index.snapshot()

    def _row(self, image_id: int) -> int:
        try:
            return int(self.index.rows_of([image_id])[0])
        except DataError:
            raise NotFoundError(f"unknown image id {image_id}; the index holds {len(self.index)} images") from None

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    def label_name(self, label: Any) -> Any:
        """Stored label -> class name(s); -1 (or no class) means unlabelled and gives None."""
        return Q.label_name(self.class_names, label)

    def class_index(self, name: str) -> int:
        if self.index.labels is None:
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
        with self._snap_lock:
            row = self._row(image_id)
            ix = self.index
            return ix.codes[row : row + 1].copy(), (None if ix.features is None else ix.features[row : row + 1].astype(np.float32))

    def search(self, code: np.ndarray, feat: np.ndarray | None, timings: dict[str, float], *, k: int,
               radius: int | None, rerank: bool, label: str | None, exclude_self: bool = False,
               self_id: int | None = None) -> dict[str, Any]:
        """Run one query through :func:`deephash.query.search` and return its JSON answer."""
        from deephash.api import make_query

        if self.index.code_kind != "hamming" and feat is None:
            raise ServiceError("this index stores no float features, so an indexed image cannot be the query of "
                               "an asymmetric search; upload the image instead")
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
        with self._snap_lock:
            row = self._row(image_id)
            lab, path = self.label_name(self.index.label_of_row(row)), display_path(self.index.paths[row])
        return {"id": image_id, "label": lab, "path": path, "thumb_url": f"/api/images/{image_id}/thumb",
                "original_url": f"/api/images/{image_id}/original"}

    def list_images(self, offset: int, limit: int, step: int = 1) -> dict[str, Any]:
        """Up to ``limit`` images in row order from ``offset``, every ``step``-th, with label, path and URLs."""
        with self._snap_lock:
            ix = self.index
            rows = range(offset, len(ix), step)[:limit]
            items = [(int(ix.ids[r]), self.label_name(ix.label_of_row(r)), display_path(ix.paths[r])) for r in rows]
            total = len(ix)
        return {"total": total, "offset": offset, "step": step,
                "items": [{"id": i, "label": lab, "path": p, "thumb_url": f"/api/images/{i}/thumb",
                           "original_url": f"/api/images/{i}/original"} for i, lab, p in items]}

    def image_file(self, image_id: int) -> Path:
        """The file behind ``image_id``, refused unless it lies inside the archive (or the uploads folder)."""
        with self._snap_lock:
            p = self.index.paths[self._row(image_id)]
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

    def thumbnail(self, image_id: int, size: int) -> bytes:
        key = (image_id, size)
        data = self.thumbs.get(key)
        if data is None:
            data = make_thumbnail(self.image_file(image_id), size, max_pixels=self.config.max_pixels)
            self.thumbs.put(key, data)
        return data

    # ------------------------------------------------------------------ writes
    def _labels_for(self, label: str | None) -> np.ndarray | None:
        ix = self.index
        if ix.labels is None:
            if label is not None:
                raise ServiceError("label: this index stores no labels; add the image without one")
            return None
        if ix.labels is not None and ix.labels.ndim == 2:
            row = np.zeros((1, ix.labels.shape[1]), np.uint8)
            for name in (label.split(",") if label else []):
                row[0, self.class_index(name.strip())] = 1
            return row
        return np.array([-1 if label is None else self.class_index(label)], np.int64)

    def add_image(self, data: bytes, filename: str, label: str | None) -> dict[str, Any]:
        """Encode an upload, keep a copy in ``<index>.uploads/``, add it and save; returns its id."""
        code, feat, _ = self.encode_upload(data, filename)
        ext = _extension_of(data)
        with self._write_lock:
            labels = self._labels_for(label)
            name = f"{uuid.uuid4().hex}.{ext}"
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.uploads_dir / name, data)
            with self._snap_lock:
                new_id = int(self.index.add(code, paths=[UPLOAD_PREFIX + name], labels=labels,
                                            features=feat if self.index.has_features else None)[0])
            try:
                self.index.log_added([new_id])
            except Exception as e:
                self._reload_after_failed_write()
                with contextlib.suppress(OSError):
                    (self.uploads_dir / name).unlink()
                raise PersistError(f"could not write the index ({type(e).__name__}: {e}); the image was not added") from None
            self._maybe_compact()
        log.info("added image %d (%s, %d bytes) as %s", new_id, filename, len(data), name)
        return {"id": new_id, **self.image_info(new_id), "count": len(self.index)}

    def remove_image(self, image_id: int) -> dict[str, Any]:
        """Remove one image and save; an uploaded file is deleted once the index no longer names it."""
        with self._write_lock:
            with self._snap_lock:
                path = self.index.paths[self._row(image_id)]
                self.index.remove([image_id])
            try:
                self.index.log_removed([image_id])
            except Exception as e:
                self._reload_after_failed_write()
                raise PersistError(f"could not write the index ({type(e).__name__}: {e}); image {image_id} was not removed") from None
            self._maybe_compact()
            self.thumbs.drop(lambda key: key[0] == image_id)
            if path.startswith(UPLOAD_PREFIX):
                with contextlib.suppress(OSError):
                    (self.uploads_dir / path[len(UPLOAD_PREFIX):]).unlink()
        log.info("removed image %d", image_id)
        return {"id": image_id, "removed": True, "count": len(self.index)}

    def _maybe_compact(self) -> None:
        """Fold the journal into a rewritten index file once it outgrows a share of that file.

        Called under the write lock after a change is durable in the journal, so a failure here
        loses nothing: it is logged and the journal simply keeps growing until a rewrite succeeds."""
        if not self.index.journal_outgrown(self.config.journal_compact_ratio, self.config.journal_compact_min_bytes):
            return
        try:
            with Timer() as t:
                self.index.save(self.index_path)
            log.info("folded the journal into %s in %.2f s", self.index_path, t.seconds)
        except Exception as e:  # the change is already durable in the journal
            log.error("could not rewrite %s to fold in its journal (%s: %s); will retry", self.index_path, type(e).__name__, e)

    def _reload_after_failed_write(self) -> None:
        log.error("index write failed; reloading %s", self.index_path)
        fresh = HashIndex.load(self.index_path)
        with self._snap_lock:
            self.index = fresh

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, Any]:
        ix = self.index
        bb = ix.meta.get("backbone") or self.model.backbone.describe()
        with self._snap_lock:
            n_uploads = sum(p.startswith(UPLOAD_PREFIX) for p in ix.paths)
            per_class = None
            if ix.labels is not None and ix.labels.ndim == 1 and self.class_names:
                counts = np.bincount(ix.labels[ix.labels >= 0], minlength=len(self.class_names))
                per_class = {n: int(c) for n, c in zip(self.class_names, counts)}
        ident = ix.meta.get("model_identity") or {"method": ix.meta.get("method", self.model.hasher.name),
                                                   "bits": ix.n_bits, "digest": None}
        return {
            "count": len(ix), "bits": ix.n_bits, "method": ident["method"], "model": {**ident, "file": ix.meta.get("model")},
            "backbone": bb, "image_size": self.model.backbone.preprocessing.size,
            "has_features": ix.has_features, "has_labels": ix.labels is not None, "class_names": self.class_names,
            "per_class": per_class, "uploaded": int(n_uploads), "searcher": ix.searcher_name,
            "code_kind": ix.code_kind, "index_file": self.index_path.name, "journal_bytes": ix.journal_bytes,
            "limits": {"max_k": self.config.max_k, "max_upload_bytes": self.config.max_upload_bytes,
                       "max_pixels": self.config.max_pixels},
            "auth": {"writes_enabled": self.config.api_key is not None, "read_key_required": self.config.read_key_required},
            "thumbnail_cache": {"items": len(self.thumbs), "bytes": self.thumbs.nbytes, "hits": self.thumbs.hits,
                                "misses": self.thumbs.misses},
            "internal_errors": self.internal_errors,
            "uptime_s": round(time.time() - self.started_at, 1),
        }
