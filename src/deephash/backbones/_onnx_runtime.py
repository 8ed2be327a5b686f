"""Running a backbone with ONNX Runtime (5-6x faster than eager PyTorch on CPU), exporting once to a cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deephash.errors import BackboneUnavailableError, ConfigError
from deephash.utils import atomic_path, cache_dir


def spinning_default() -> bool:
    """Whether ONNX Runtime's intra-op threads spin while they wait for work: no, unless
    ``DEEPHASH_ORT_SPINNING=1``. Spinning threads burn the CPU that the decoder processes and every
    other process on the machine need (``deephash bench encode`` measures both settings)."""
    env = os.environ.get("DEEPHASH_ORT_SPINNING", "0").strip()
    if env not in ("0", "1"):
        raise ConfigError(f"DEEPHASH_ORT_SPINNING must be 0 or 1; got {env!r}")
    return env == "1"


def ort_session(onnx_path: str | os.PathLike, n_threads: int | None = None, *, spinning: bool | None = None):
    """An ONNX Runtime CPU session: ``n_threads`` intra-op threads (default ``DEEPHASH_THREADS`` or one per
    core) that spin while idle only if ``spinning`` (default :func:`spinning_default`)."""
    from deephash.optional import require

    ort = require("onnxruntime", "running a backbone", error=BackboneUnavailableError)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(n_threads or os.environ.get("DEEPHASH_THREADS", 0) or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    spin = spinning_default() if spinning is None else spinning
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
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

    def __init__(self, onnx_path: str | os.PathLike, n_threads: int | None = None, *,
                 spinning: bool | None = None) -> None:
        self.session = ort_session(onnx_path, n_threads, spinning=spinning)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x.astype(np.float32, copy=False)})[0]
        if out.ndim == 4:  # un-pooled feature maps: global average pool
            out = out.mean(axis=(2, 3))
        return out.reshape(out.shape[0], -1).astype(np.float32, copy=False)
