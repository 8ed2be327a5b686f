"""Backbones turn images into float feature vectors (frozen, as MHCLN's first stage)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deephash.config import Preprocessing
from deephash.registry import Registry

BACKBONES: Registry["Backbone"] = Registry("backbone")


def register_backbone(name: str):
    return BACKBONES.register(name)


class Backbone:
    """A frozen feature extractor: ``embed(uint8 NHWC) -> float32 (n, dim)``."""

    name: str = "base"
    dim: int = 0

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> float32 NCHW, normalised by the recorded mean/std."""
        # one multiply-add per value, written once in NCHW order: (x / 255 - mean) / std
        std = np.asarray(self.preprocessing.std, np.float32)
        scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1)
        bias = (-np.asarray(self.preprocessing.mean, np.float32) / std).reshape(1, 3, 1, 1)
        x = np.asarray(images).transpose(0, 3, 1, 2)
        out = np.empty(x.shape, np.float32)
        np.multiply(x, scale, out=out, casting="unsafe")
        out += bias
        return out

    def embed(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def torch_module(self):
        """A trainable ``torch.nn.Module`` (NCHW float -> (n, dim)) for end-to-end fine-tuning."""
        raise NotImplementedError(f"backbone {self.name} has no trainable torch module")

    def describe(self) -> dict[str, Any]:
        """What the backbone is — the feature cache is keyed by it, so it names the weights too
        (file name and size; two weight files for one architecture never share cached features)."""
        d = {"name": self.name, "dim": self.dim, "preprocessing": self.preprocessing.to_dict()}
        w = getattr(self, "weights_path", None)
        if w:
            p = Path(w)
            d["weights"] = f"{p.name}:{p.stat().st_size if p.is_file() else 'missing'}"
        elif getattr(self, "weights_tag", None):
            d["weights"] = str(self.weights_tag)
        return d
