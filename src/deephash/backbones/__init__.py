"""Pretrained feature extractors, by name."""
from deephash.backbones import efficientnet_lite, mobilenet_v2  # noqa: F401  (registers)
from deephash.backbones.base import BACKBONES, Backbone, create_backbone, list_backbones, register_backbone

DEFAULT_BACKBONE = "efficientnet-lite0"

__all__ = ["Backbone", "BACKBONES", "create_backbone", "list_backbones", "register_backbone", "DEFAULT_BACKBONE"]
