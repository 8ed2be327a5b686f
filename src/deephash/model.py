"""HashModel: a backbone plus a trained hasher — images in, packed codes (and float features) out."""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash.backbones import create_backbone
from deephash.backbones.base import Backbone
from deephash.config import HasherConfig
from deephash.errors import ConfigError
from deephash.hashers.base import Hasher, load_hasher


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that made its codes: method, bits and a digest of the
    checkpoint file's bytes (its weights and config), so a search with another model is refused."""

    method: str
    bits: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelIdentity":
        return cls(str(d["method"]), int(d["bits"]), str(d["digest"]))

    def __str__(self) -> str:
        return f"{self.method}, {self.bits} bits, digest {self.digest}"


def checkpoint_digest(path: str | os.PathLike) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_path_of(meta: dict[str, Any], index_path: str | os.PathLike) -> Path:
    """The checkpoint an index names in its ``meta["model"]`` (relative to the index file's folder)."""
    m = meta.get("model")
    if not m:
        raise ConfigError(f"{index_path}: the index names no model, so images cannot be searched (only codes); "
                          "pass the model that made it (--model)")
    p = Path(m)
    return p if p.is_absolute() else (Path(index_path).resolve().parent / p)


def require_same_model(meta: dict[str, Any], model: "HashModel", index_path: str | os.PathLike) -> None:
    """Refuse a model other than the one an index was built with (recorded in ``meta["model_identity"]``;
    indexes from before it was recorded are checked on method and bits only)."""
    have = model.identity
    rec = meta.get("model_identity")
    if rec:
        want = ModelIdentity.from_dict(rec)
        if want == have:
            return
    else:
        want = None
        if meta.get("method") in (None, have.method):
            return
    what = str(want) if want else f"{meta.get('method')}"
    raise ConfigError(f"{index_path} was built with another model ({what}) than the one given ({model.path}: {have}): "
                      "its codes are not comparable; pass the model the index was built with (--model), or rebuild "
                      "the index with this one (deephash index ARCHIVE --model MODEL --out INDEX)")


class HashModel:
    """``HashModel.load(ckpt).encode_images([...])`` -> (codes, features, timings)."""

    def __init__(self, backbone: Backbone, hasher: Hasher, config: HasherConfig | None = None, *,
                 path: Path | None = None, digest: str | None = None) -> None:
        self.backbone = backbone
        self.hasher = hasher
        self.config = config
        self.path = path
        self.digest = digest

    @property
    def identity(self) -> ModelIdentity:
        """Method, bits and checkpoint digest, as recorded in the indexes this model builds."""
        return ModelIdentity(self.hasher.name, int(self.hasher.n_bits), self.digest or "")

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, **backbone_kw) -> "HashModel":
        hasher, cfg = load_hasher(checkpoint)
        if not cfg.backbone:
            raise ConfigError(f"{checkpoint}: the checkpoint names no backbone, so it cannot encode images (only features)")
        size = (cfg.preprocessing or {}).get("size")
        kw = dict(backbone_kw)
        if size and "image_size" not in kw:
            kw["image_size"] = int(size)
        backbone = create_backbone(cfg.backbone, **kw)
        if cfg.finetune:  # end-to-end checkpoint: the fine-tuned backbone weights are inside it
            from deephash.backbones.finetuned import FinetunedBackbone

            backbone = FinetunedBackbone.from_hasher(backbone, hasher, decode_size=cfg.finetune.get("store_size"))
        return cls(backbone, hasher, cfg, path=Path(checkpoint), digest=checkpoint_digest(checkpoint))

    def encoder(self, **kw: Any):
        """The streaming encoder for this model's backbone and hasher (see :class:`deephash.encoding.StreamEncoder`)."""
        from deephash.encoding import StreamEncoder

        return StreamEncoder(self.backbone, self.hasher, **kw)

    def encode_batches(self, images: Sequence[Path | bytes], *, batch_size: int = 64, names: Sequence[str] | None = None,
                       max_pixels: int | None = None, workers: int | None = None):
        """Yield ``(positions, codes, features, timings)`` per batch of the streaming encoder (decoding
        in worker processes ahead of the backbone); a batch with a bad image is yielded one image at a
        time, the bad ones as ``(position, None, None, reason)``, so only they are skipped. The one
        batch path of the jobs API, the service and the cluster engines' shards."""
        enc = self.encoder(batch_size=batch_size, max_pixels=max_pixels, workers=workers)
        for b in enc.stream(images, names):
            t = {k: b.timings[k] for k in ("decode", "backbone", "hash")}
            if not b.failed:
                yield list(range(b.start, b.stop)), b.codes, b.features, t
                continue
            share = {k: v / (b.stop - b.start) for k, v in t.items()}
            row = {int(p): j for j, p in enumerate(b.positions)}
            why = dict(b.failed)
            for i in range(b.start, b.stop):
                if i in row:
                    j = row[i]
                    yield [i], b.codes[j : j + 1], b.features[j : j + 1], share
                else:
                    yield [i], None, None, why[i]

    def encode_images(self, images: Sequence[bytes | str | Path], *, names: Sequence[str] | None = None,
                      max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Decode, embed and hash one batch in this process; returns (codes uint8 (n, K/8), features float32
        (n, D), per-stage seconds). A bad image raises :class:`DataError`. It runs the streaming encoder
        (inline) like every other encode path; many images are better given to :meth:`encoder`."""
        from deephash.encoding import encode_images, require_all

        r = require_all(encode_images(list(images), self.backbone, self.hasher, names=names, max_pixels=max_pixels,
                                      batch_size=max(1, len(images)), workers=0))
        return r.codes, r.features, {k: r.timings[k] for k in ("decode", "backbone", "hash")}
