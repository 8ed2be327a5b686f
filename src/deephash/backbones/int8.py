"""int8 inference on CPU: an ONNX backbone statically quantised with ONNX Runtime.

Weights are quantised per output channel (int8), activations per tensor (uint8) with ranges
calibrated (min/max) on a few hundred images of the archive at hand; the stem and head
convolutions stay float (they carry most of the error for the least time). The quantised model
is cached under the backbone's ONNX file and a digest of the calibration images, so a second run
with the same calibration set reuses it. :func:`deephash.encoding.int8.int8_backbone` picks the
calibration images; the effect on mAP is measured by ``deephash bench encode --map``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from deephash.backbones._onnx_runtime import OrtRunner
from deephash.backbones.base import Backbone
from deephash.errors import BackboneUnavailableError, ConfigError
from deephash.utils import atomic_path, cache_dir, sha1_of

#: bump when the quantisation recipe changes (it is part of the cached model's key)
RECIPE = "qdq-u8s8-perchannel-minmax-float-stem-head-v1"
CALIBRATION_BATCH = 32


def quantize_onnx(fp32_path: Path, calibration: Callable[[], np.ndarray], key: str) -> Path:
    """Statically quantise ``fp32_path`` calibrated on ``calibration()`` (normalised float32 NCHW), cached under ``key``."""
    out = cache_dir() / "backbones" / f"{key}.int8.onnx"
    if out.is_file():
        return out
    calibration = calibration()
    if not len(calibration):
        raise ConfigError("int8 calibration needs at least one image that decodes; got none")
    import logging

    from deephash.optional import require

    onnx = require("onnx", "int8 inference (--int8)")
    quantization = require("onnxruntime.quantization", "int8 inference (--int8)")
    CalibrationDataReader, QuantFormat, QuantType, quantize_static = (
        quantization.CalibrationDataReader, quantization.QuantFormat, quantization.QuantType, quantization.quantize_static)
    quant_pre_process = require("onnxruntime.quantization.shape_inference", "int8 inference (--int8)").quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: calibration[s : s + CALIBRATION_BATCH]}
                                 for s in range(0, len(calibration), CALIBRATION_BATCH)])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser logs advice at WARNING
    with atomic_path(out.with_suffix(".pre.onnx"), suffix=".onnx") as pre, atomic_path(out, suffix=".onnx") as tmp:
        # folds the constant padding sub-graphs into the convolutions, so that every conv quantises whole
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        model = onnx.load(str(pre))
        convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
        name = model.graph.input[0].name
        quantize_static(str(pre), str(tmp), Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=[convs[0], convs[-1]] if len(convs) > 2 else [])
    out.with_suffix(".pre.onnx").unlink(missing_ok=True)
    return out


class Int8Backbone(Backbone):
    """``base`` (an ONNX Runtime backbone) run as a statically quantised int8 model.

    ``calibration()`` gives decoded images (``uint8 (n, size, size, 3)``) of the archive (called only when
    the quantised model is not cached yet); ``calibration_id`` names them (the feature cache and the
    quantised model are keyed by it)."""

    def __init__(self, base: Backbone, calibration: Callable[[], np.ndarray], calibration_id: str, *,
                 n_threads: int | None = None) -> None:
        onnx_path = getattr(base, "onnx_path", None)
        if onnx_path is None:
            raise ConfigError(f"int8 inference needs a backbone run by ONNX Runtime; {base.name} is not")
        super().__init__(base.preprocessing)
        self.base = base
        self.name = base.name
        self.dim = base.dim
        self.calibration_id = calibration_id
        fp32 = Path(onnx_path())
        key = sha1_of(RECIPE, fp32.name, fp32.stat().st_size, base.describe(), calibration_id)[:16]
        try:
            self.int8_path = quantize_onnx(fp32, lambda: base.normalize(calibration()), f"{fp32.stem}-{key}")
        except (ImportError, ValueError, RuntimeError) as e:  # onnx missing, or a graph the quantiser refuses
            raise BackboneUnavailableError(f"cannot quantise {base.name} to int8: {e}") from None
        self._runner = OrtRunner(self.int8_path, n_threads or getattr(base, "n_threads", None))

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self._runner(self.normalize(images))

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "int8": {"recipe": RECIPE, "calibration": self.calibration_id}}
