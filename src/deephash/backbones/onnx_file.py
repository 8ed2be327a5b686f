"""Any ONNX model as a backbone: ``onnx:/path/model.onnx`` (NCHW float input; 2-D or 4-D output, pooled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.backbones._onnx_runtime import OrtRunner
from deephash.backbones.base import Backbone
from deephash.config import Preprocessing
from deephash.errors import BackboneUnavailableError


class OnnxFileBackbone(Backbone):
    def __init__(self, path: str, *, image_size: int = 224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 n_threads: int | None = None) -> None:
        super().__init__(Preprocessing(image_size, tuple(mean), tuple(std)))
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise BackboneUnavailableError(f"ONNX backbone file {str(self.path)!r} does not exist")
        self.name = f"onnx:{self.path}"
        self._runner = OrtRunner(self.path, n_threads)
        probe = self._runner(np.zeros((1, 3, image_size, image_size), np.float32))
        self.dim = int(probe.shape[1])

    def onnx_path(self) -> Path:
        return self.path

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self._runner(self.normalize(images))
