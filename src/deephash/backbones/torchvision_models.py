"""torchvision models with a local weights file: ``torchvision:resnet50`` + ``weights_path=FILE``.

Needs ``torchvision`` installed; with internet, ``weights="DEFAULT"`` lets torchvision download them.
"""
from __future__ import annotations

import numpy as np

from deephash.backbones.base import Backbone
from deephash.config import Preprocessing
from deephash.errors import BackboneUnavailableError


class TorchvisionBackbone(Backbone):
    def __init__(self, arch: str, *, weights_path: str | None = None, weights: str | None = None,
                 image_size: int = 224) -> None:
        super().__init__(Preprocessing(image_size))
        import torch

        from deephash.optional import require

        torchvision = require("torchvision", f"the torchvision:{arch} backbone (or use efficientnet-lite0)",
                              error=BackboneUnavailableError)
        if not hasattr(torchvision.models, arch):
            raise BackboneUnavailableError(f"torchvision has no model {arch!r}")
        if weights_path is None and weights is None:
            raise BackboneUnavailableError(
                f"torchvision:{arch} needs weights_path=FILE (offline) or weights='DEFAULT' (downloads, needs internet)"
            )
        net = getattr(torchvision.models, arch)(weights=weights)
        if weights_path:
            net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        for attr in ("fc", "classifier", "head", "heads"):
            if hasattr(net, attr):
                setattr(net, attr, torch.nn.Identity())
                break
        self.net = net.eval()
        self.name = f"torchvision:{arch}"
        self.weights_path, self.weights_tag = weights_path, weights  # named in describe() (the cache key)
        with torch.no_grad():
            self.dim = int(self.net(torch.zeros(1, 3, image_size, image_size)).reshape(1, -1).shape[1])

    def torch_module(self):
        return self.net

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(self.normalize(images))).reshape(len(images), -1).numpy()
