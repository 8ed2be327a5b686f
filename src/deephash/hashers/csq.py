"""CSQ — central similarity quantization (Yuan et al., CVPR 2020), a hash-centre method.

Descriptor -> Linear -> tanh (K units); each class owns a fixed hash centre (Hadamard rows,
:func:`deephash.losses.central_similarity_loss.hadamard_centers`) and the code is trained to
its class's centre (BCE) with a small quantisation term. Codes: ``u >= 0``. Class prediction
(``classify``): the nearest centre by inner product. Multi-hot labels: the target is the sign
of the mean of the label centres (ties -> +1). Trained end to end via ``deephash finetune``
(or head-only on cached features).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.hashers.base import register_hasher
from deephash.hashers.deep import DeepHasher


def csq_network(in_dim: int, n_bits: int, dropout: float = 0.0):
    from torch import nn

    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, n_bits), nn.Tanh())


@register_hasher("csq")
class CSQ(DeepHasher):
    family = "hash centres (CSQ)"
    reference = {"map": None, "setting": "CSQ paper reports ImageNet/NUS-WIDE/COCO; not a seed method here"}
    threshold = 0.0
    supervised = True
    default_train = {"n_iters": 3000, "lr": 1e-3, "batch_size": 128, "optimizer": "adam", "eval_every": 500,
                     "patience": 3}

    def __init__(self, n_bits: int = 64, *, quantization: float = 1e-4, dropout: float = 0.0, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.quantization, self.dropout = quantization, dropout

    def build_network(self, in_dim: int):
        return csq_network(in_dim, self.n_bits, self.dropout)

    def prepare(self, X, y, rng):
        import torch

        from deephash.losses.central_similarity_loss import CentralSimilarityLoss, hadamard_centers

        y = np.asarray(y)
        self.multi_label_ = y.ndim == 2
        if self.multi_label_:
            self.classes_ = np.arange(y.shape[1])
            yy = y.astype(np.float32)
        else:
            self.classes_ = np.unique(y)
            yy = np.searchsorted(self.classes_, y).astype(np.int64)
        self.centers_ = hadamard_centers(len(self.classes_), self.n_bits, self.seed)
        self.loss_ = CentralSimilarityLoss(self.quantization)
        super().prepare(X, yy, rng)
        self._dev_centers = None

    def _targets(self, y):
        import torch

        c = self.centers_.to(y.device)
        if y.ndim == 1:
            return c[y]
        m = y.float() @ c
        return torch.where(m >= 0, 1.0, -1.0)

    def compute_loss(self, net, batch):
        u = net(batch["x"])
        return self.loss_(u, self._targets(batch["y"]))

    def classify(self, X: np.ndarray) -> np.ndarray:
        """Nearest class centre (inner product with the tanh outputs); single-label only."""
        u = self.transform(X)
        return self.classes_[np.argmax(u @ self.centers_.numpy().T, axis=1)]

    def extra_state(self) -> dict[str, Any]:
        import torch

        return {"classes": torch.from_numpy(np.asarray(self.classes_)), "centers": self.centers_,
                "multi_label": bool(self.multi_label_)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "classes" in state:
            c = state["classes"]
            self.classes_ = c.numpy() if hasattr(c, "numpy") else np.asarray(c)
            import torch

            self.centers_ = torch.as_tensor(np.asarray(state["centers"]), dtype=torch.float32)
            self.multi_label_ = bool(state.get("multi_label", False))
