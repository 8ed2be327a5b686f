"""Pretrained feature extractors, by name: the registered ones (``efficientnet-lite0``, ...), any
ONNX file (``onnx:/path/model.onnx``) and torchvision's models (``torchvision:resnet50``).

The implementations import :mod:`deephash.backbones.base`; this package face imports them all and
owns the factory, so no arrow runs from the base class back to its subclasses."""
from __future__ import annotations

from typing import Any

from deephash.backbones import efficientnet_lite, mobilenet_v2  # noqa: F401  (registers)
from deephash.backbones.base import BACKBONES, Backbone, register_backbone
from deephash.backbones.onnx_file import OnnxFileBackbone
from deephash.backbones.torchvision_models import TorchvisionBackbone

DEFAULT_BACKBONE = "efficientnet-lite0"

#: backbones named by a prefix and a free-form argument (a file path, a torchvision model name)
PREFIXED = {"onnx:": OnnxFileBackbone, "torchvision:": TorchvisionBackbone}


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """``create_backbone("efficientnet-lite0", image_size=128)``; ``onnx:/path.onnx`` loads any ONNX file."""
    for prefix, cls in PREFIXED.items():
        if name.startswith(prefix):
            return cls(name[len(prefix):], **kwargs)
    return BACKBONES.create(name, **kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    return BACKBONES.names(pattern) + [f"{p}<{'path' if p == 'onnx:' else 'name'}>" for p in PREFIXED]


__all__ = ["Backbone", "BACKBONES", "create_backbone", "list_backbones", "register_backbone", "DEFAULT_BACKBONE"]
