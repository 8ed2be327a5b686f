"""A backbone fine-tuned end to end, rebuilt from a checkpoint (see deephash.train.finetune)."""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.backbones.base import Backbone
from deephash.config import Preprocessing


class FinetunedBackbone(Backbone):
    """Runs a method's fine-tuned trunk (PyTorch, device chosen automatically): images -> descriptors.

    The descriptors are what the checkpoint's head was trained on, so ``hasher.encode(embed(x))``
    gives the fine-tuned model's codes; they are also the float features stored for re-ranking."""

    def __init__(self, name: str, trunk, preprocessing: Preprocessing, *, device: str = "auto", batch: int = 256) -> None:
        from deephash.train.trainer import pick_device

        super().__init__(preprocessing)
        self.name = name
        self.device = pick_device(device)
        self.trunk = trunk.to(self.device).eval()
        self.dim = int(trunk.out_dim)
        self.batch = batch

    @classmethod
    def from_hasher(cls, base: Backbone, hasher, **kw: Any) -> "FinetunedBackbone":
        """Architecture from ``base`` (its torch module), weights from the hasher's checkpoint."""
        hasher.attach_trunk(base.torch_module())
        hasher.preprocessing_ = base.preprocessing
        return cls(base.name, hasher.trunk_, base.preprocessing, **kw)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(images), self.batch):
                x = torch.from_numpy(self.normalize(images[s : s + self.batch])).to(self.device)
                out.append(self.trunk(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "finetuned": True}
