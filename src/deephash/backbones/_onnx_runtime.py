"""Running a backbone with ONNX Runtime (5-6x faster than eager PyTorch on CPU), exporting once to a cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deephash.errors import BackboneUnavailableError
from deephash.utils import atomic_path, cache_dir


def ort_session(onnx_path: str | os.PathLike, n_threads: int | None = None):
    from deephash.optional import require

    ort = require("onnxruntime", "running a backbone", error=BackboneUnavailableError)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(n_threads or os.environ.get("DEEPHASH_THREADS", 0) or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise BackboneUnavailableError(f"cannot load ONNX model {onnx_path}: {e}") from None


def export_pooled_onnx(module, key: str, example_size: int) -> Path:
    """Export ``module`` (NCHW -> (n, dim)) to ONNX with dynamic batch/size, cached under ``key``."""
    import torch

    out = cache_dir() / "backbones" / f"{key}.onnx"
    if out.is_file():
        return out
    module.eval()
    x = torch.zeros(1, 3, example_size, example_size)
    with atomic_path(out, suffix=".onnx") as tmp, torch.no_grad():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, x, str(tmp), input_names=["x"], output_names=["f"],
                              dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "f": {0: "n"}}, opset_version=17,
                              dynamo=False)
    return out


def simplified_onnx(path: Path) -> Path:
    """``path`` with its constant sub-graphs folded (the TF-style "same" padding of EfficientNet-Lite becomes
    the convolutions' own padding): the same outputs bit for bit, ~15 % less time per batch; cached beside it.
    Falls back to ``path`` where the optimiser cannot run."""
    out = path.with_name(path.stem + ".simplified.onnx")
    if out.is_file():
        return out
    try:
        from deephash.optional import require

        quant_pre_process = require("onnxruntime.quantization.shape_inference", "folding the backbone's ONNX graph",
                                    error=BackboneUnavailableError).quant_pre_process

        with atomic_path(out, suffix=".onnx") as tmp:
            quant_pre_process(str(path), str(tmp), skip_symbolic_shape=False)
    except Exception:  # an optional speed-up: any failure leaves the exported model in use
        return path
    return out


class OrtRunner:
    """Calls an ONNX session on float32 NCHW batches; returns float32 (n, dim)."""

    def __init__(self, onnx_path: str | os.PathLike, n_threads: int | None = None) -> None:
        self.session = ort_session(onnx_path, n_threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x.astype(np.float32, copy=False)})[0]
        if out.ndim == 4:  # un-pooled feature maps: global average pool
            out = out.mean(axis=(2, 3))
        return out.reshape(out.shape[0], -1).astype(np.float32, copy=False)
