"""HashModel: a backbone plus a trained hasher — images in, packed codes (and float features) out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.backbones import create_backbone
from deephash.backbones.base import Backbone
from deephash.config import HasherConfig
from deephash.data.images import decode_image
from deephash.hashers.base import Hasher, load_hasher
from deephash.utils import Timer


class HashModel:
    """``HashModel.load(ckpt).encode_images([...])`` -> (codes, features, timings)."""

    def __init__(self, backbone: Backbone, hasher: Hasher, config: HasherConfig | None = None) -> None:
        self.backbone = backbone
        self.hasher = hasher
        self.config = config

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, **backbone_kw) -> "HashModel":
        hasher, cfg = load_hasher(checkpoint)
        if not cfg.backbone:
            from deephash.errors import ConfigError

            raise ConfigError(f"{checkpoint}: the checkpoint names no backbone, so it cannot encode images (only features)")
        size = (cfg.preprocessing or {}).get("size")
        kw = dict(backbone_kw)
        if size and "image_size" not in kw:
            kw["image_size"] = int(size)
        backbone = create_backbone(cfg.backbone, **kw)
        if cfg.finetune:  # end-to-end checkpoint: the fine-tuned backbone weights are inside it
            from deephash.backbones.finetuned import FinetunedBackbone

            backbone = FinetunedBackbone.from_hasher(backbone, hasher, decode_size=cfg.finetune.get("store_size"))
        return cls(backbone, hasher, cfg)

    def images_to_array(self, images: Sequence[bytes | str | Path]) -> np.ndarray:
        from PIL import Image

        size = getattr(self.backbone, "decode_size", None) or self.backbone.preprocessing.size
        arrs = []
        for im in images:
            pil = decode_image(im)
            if pil.size != (size, size):
                pil = pil.resize((size, size), Image.BILINEAR)
            arrs.append(np.asarray(pil, np.uint8))
        return np.stack(arrs)

    def encode_images(self, images: Sequence[bytes | str | Path]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Decode, embed and hash; returns (codes uint8 (n, K/8), features float32 (n, D), per-stage seconds)."""
        with Timer() as t_dec:
            arr = self.images_to_array(images)
        with Timer() as t_bb:
            feats = self.backbone.embed(arr)
        with Timer() as t_h:
            codes = self.hasher.encode(feats)
        return codes, feats, {"decode": t_dec.seconds, "backbone": t_bb.seconds, "hash": t_h.seconds}
