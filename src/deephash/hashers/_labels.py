"""Shared by the methods with a classification layer (DLBHC, SPP-PMT): label encoding,
the classification loss, ``classify(X)``, and saving the class list with the checkpoint."""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.errors import NotFittedError


class ClassifierMixin:
    """Single-label data: softmax cross-entropy over ``classes_``; multi-hot: per-class BCE."""

    def _encode_labels(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        self.multi_label_ = y.ndim == 2
        if self.multi_label_:
            self.classes_ = np.arange(y.shape[1])
            return y.astype(np.float32)
        self.classes_ = np.unique(y)
        return np.searchsorted(self.classes_, y).astype(np.int64)

    @property
    def n_classes_(self) -> int:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {self.name} hasher has not seen labels yet")
        return len(self.classes_)

    def class_loss(self, logits, y):
        from torch import nn

        if getattr(self, "multi_label_", False):
            return nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float())
        return nn.functional.cross_entropy(logits.float(), y,
                                           label_smoothing=float(getattr(self, "label_smoothing", 0.0) or 0.0))

    def class_logits(self, X: np.ndarray) -> np.ndarray:
        """Classifier scores ``(n, n_classes)`` for feature rows (descriptors, end to end)."""
        return self.run_network(X, lambda net, x: net(x)[1], self.n_classes_)

    def classify(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels (single-label) or a multi-hot ``uint8`` matrix (multi-label)."""
        logits = self.class_logits(X)
        if getattr(self, "multi_label_", False):
            return (logits > 0).astype(np.uint8)
        return self.classes_[np.argmax(logits, axis=1)]

    def extra_state(self) -> dict[str, Any]:
        import torch

        return {"classes": torch.from_numpy(np.asarray(self.classes_)), "multi_label": bool(self.multi_label_)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "classes" in state:
            c = state["classes"]
            self.classes_ = c.numpy() if hasattr(c, "numpy") else np.asarray(c)
            self.multi_label_ = bool(state.get("multi_label", False))
