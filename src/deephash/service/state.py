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

from deephash.data.images import decode_image
from deephash.errors import ConfigError, DataError
from deephash.index import HashIndex
from deephash.model import HashModel
from deephash.names import display_path  # names are bytes: shown with \xNN escapes
from deephash.pipeline import UPLOAD_PREFIX, model_path_of  # uploads' index paths start with UPLOAD_PREFIX
from deephash.service.config import ServiceConfig
from deephash.service.errors import NotFoundError, PersistError, ServiceError
from deephash.service.search import Hits, Snapshot, run_asymmetric_search, run_search
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

    def __init__(self, index_path: str | Path, config: ServiceConfig) -> None:
        self.config = config
        self.index_path = Path(index_path).resolve()
        self.index = HashIndex.load(self.index_path)
        self.model = HashModel.load(model_path_of(self.index, self.index_path))
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

    def snapshot(self) -> Snapshot:
        with self._snap_lock:
            ix = self.index
            return Snapshot(ix.codes, ix.ids, ix.labels, ix.features)

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
        names = self.class_names
        if label is None:
            return None
        if isinstance(label, list):
            return [names[j] if j < len(names) else j for j in label] or None
        if label < 0:
            return None
        return names[label] if label < len(names) else label

    def class_index(self, name: str) -> int:
        if self.index.labels is None:
            raise ServiceError("this index stores no labels, so results cannot be filtered by label")
        names = self.class_names
        if name in names:
            return names.index(name)
        raise ServiceError(f"label: unknown class {name!r}; this index knows {', '.join(names)}")

    # ------------------------------------------------------------------ encoding and search
    def encode_upload(self, data: bytes, filename: str) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Upload bytes -> (code (1, K/8), feature (1, D), per-stage seconds); bad images raise DataError."""
        size = self.model.backbone.preprocessing.size
        with Timer() as t_dec:
            im = decode_image(data, name=filename, max_pixels=self.config.max_pixels)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, np.uint8)[None]
        with Timer() as t_bb:
            feats = self.model.backbone.embed(arr)
        with Timer() as t_h:
            codes = self.model.hasher.encode(feats)
        return codes, feats, {"decode": t_dec.seconds, "backbone": t_bb.seconds, "hash": t_h.seconds}

    def stored_query(self, image_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The code and float feature the index holds for ``image_id``."""
        with self._snap_lock:
            row = self._row(image_id)
            ix = self.index
            return ix.codes[row : row + 1].copy(), (None if ix.features is None else ix.features[row : row + 1].astype(np.float32))

    def search(self, code: np.ndarray, feat: np.ndarray | None, timings: dict[str, float], *, k: int,
               radius: int | None, rerank: bool, label: str | None) -> dict[str, Any]:
        """Run one query and shape the JSON answer (hits with labels and URLs, per-stage ms)."""
        n_bits = self.index.n_bits
        cls = None if label is None else self.class_index(label)
        if self.index.code_kind != "hamming":  # PQ / DPQ: asymmetric distance from the query's features
            if radius is not None or rerank:
                raise ServiceError(f"radius and rerank are Hamming-code notions; this index holds {self.index.code_kind!r} "
                                   "codes, ranked by asymmetric distance: search without them")
            if feat is None:
                raise ServiceError("this index stores no float features, so an indexed image cannot be the query of "
                                   "an asymmetric search; upload the image instead")
            hits = run_asymmetric_search(self.snapshot, self.model.hasher.query_distances, np.asarray(feat, np.float32),
                                         k=k, class_index=cls)
            return self._answer(hits, timings, code, k=k, radius=radius, rerank=rerank, label=label)
        if radius is not None and not 0 <= radius <= n_bits:
            raise ServiceError(f"radius must be between 0 and {n_bits} (the code length); got {radius}")
        if rerank and (feat is None or not self.index.has_features):
            raise ServiceError("this index stores no float features, so it cannot re-rank; search with rerank=false")
        hits = run_search(self.index, self.snapshot, code, feat, k=k, radius=radius, rerank=rerank, class_index=cls)
        return self._answer(hits, timings, code, k=k, radius=radius, rerank=rerank, label=label)

    def _answer(self, hits: Hits, timings: dict[str, float], code: np.ndarray, **params: Any) -> dict[str, Any]:
        with self._snap_lock:
            ix = self.index
            try:
                rows = ix.rows_of(hits.ids) if len(hits.ids) else np.zeros(0, np.int64)
            except DataError:  # some were removed while this query ran: answer without them
                hits = hits.keep(np.isin(hits.ids, ix.ids))
                rows = ix.rows_of(hits.ids) if len(hits.ids) else np.zeros(0, np.int64)
            labs = [self.label_name(ix.label_of_row(int(r))) for r in rows]
            paths = [display_path(ix.paths[int(r)]) for r in rows]
        results = []
        for i, (id_, lab, path) in enumerate(zip(hits.ids, labs, paths)):
            item = {"rank": i + 1, "id": int(id_), "label": lab, "path": path,
                    "thumb_url": f"/api/images/{int(id_)}/thumb", "original_url": f"/api/images/{int(id_)}/original"}
            if hits.hamming is not None:
                item["hamming"] = int(hits.hamming[i])
            if hits.distance is not None:
                item["distance"] = float(hits.distance[i])
            if hits.feature_distance is not None:
                item["feature_distance"] = float(hits.feature_distance[i])
            results.append(item)
        all_t = {**timings, **hits.timings}
        stages = ("decode", "backbone", "hash", "search", "rerank")
        t_ms = {s: (round(all_t[s] * 1000, 3) if s in all_t else None) for s in stages}
        t_ms["total"] = round(sum(v for v in t_ms.values() if v is not None), 3)
        out = {"results": results, "count": len(results), "params": params, "timings_ms": t_ms,
               "code": code[0].tobytes().hex()}
        if hits.pool_size is not None:
            out["rerank_pool"] = {"size": hits.pool_size, "radius": hits.pool_radius}
        return out

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
        return {
            "count": len(ix), "bits": ix.n_bits, "method": ix.meta.get("method", self.model.hasher.name),
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
