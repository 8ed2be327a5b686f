"""A backbone fine-tuned end to end, rebuilt from a checkpoint (see deephash.train.finetune); it embeds
images through the same image bank (deephash.data.image_bank) that trained it."""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.backbones.base import Backbone
from deephash.config import Preprocessing


class FinetunedBackbone(Backbone):
    """Runs a method's fine-tuned trunk (PyTorch, device chosen automatically): images -> descriptors.

    The descriptors are what the checkpoint's head was trained on, so ``hasher.encode(embed(x))``
    gives the fine-tuned model's codes; they are also the float features stored for re-ranking."""

    def __init__(self, name: str, trunk, preprocessing: Preprocessing, *, decode_size: int | None = None,
                 device: str = "auto", batch: int = 256) -> None:
        from deephash.devices import pick_device

        super().__init__(preprocessing)
        self.name = name
        self.device = pick_device(device)
        self.trunk = trunk.to(self.device).eval()
        self.dim = int(trunk.out_dim)
        self.batch = batch
        #: size images are decoded to (the training images' stored size); the resize to the
        #: input size then happens in torch, exactly as during fine-tuning
        self.decode_size = int(decode_size) if decode_size else None
        #: digest of the fine-tuned weights: part of describe(), hence of the feature-cache key, so
        #: two checkpoints fine-tuned from the same base never share cached features
        self.weights_sha1 = _weights_digest(self.trunk)

    @classmethod
    def from_hasher(cls, base: Backbone, hasher, **kw: Any) -> "FinetunedBackbone":
        """Architecture from ``base`` (its torch module), weights from the hasher's checkpoint."""
        hasher.attach_trunk(base.torch_module())
        hasher.preprocessing_ = base.preprocessing
        return cls(base.name, hasher.trunk_, base.preprocessing, **kw)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC (any square size) -> descriptors, preprocessed as in fine-tuning (ImageBank)."""
        from deephash.data.image_bank import ImageBank, run_network

        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        bank = ImageBank(images, self.device, self.preprocessing, channels_last=self.device.type == "cuda")
        return run_network(self.trunk, self.trunk, bank, self.batch)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "finetuned": True, "weights_sha1": self.weights_sha1,
                "decode_size": self.decode_size}


def _weights_digest(module) -> str:
    """SHA-1 over every tensor of ``module``'s state (names and raw bytes, in name order)."""
    import hashlib

    import torch

    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
