"""What the survey's head-only methods share: a standardising MLP head over cached backbone
features (MHCLN's two-stage design), label-to-index bookkeeping and sign codes (bit = output >= 0)."""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers.deep import DeepHasher


def _modules():
    import torch
    from torch import nn

    class Standardize(nn.Module):
        """``(x − mean) / std`` with the training features' statistics (buffers, saved with the net)."""

        def __init__(self, dim: int) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("inv_std", torch.ones(dim))

        def fit(self, X: "torch.Tensor") -> None:
            self.mean.copy_(X.mean(0))
            self.inv_std.copy_(1.0 / X.std(0).clamp_min(1e-6))

        def forward(self, x):
            return (x - self.mean) * self.inv_std

    return Standardize


def mlp_head(in_dim: int, out_dim: int, hidden: int = 1024, dropout: float = 0.0):
    """``standardise -> Linear(in_dim, hidden) -> ReLU -> Dropout -> Linear(hidden, out_dim)``;
    ``hidden=0`` gives a single linear layer after the standardisation."""
    from torch import nn

    Standardize = _modules()
    if hidden <= 0:
        return nn.Sequential(Standardize(in_dim), nn.Linear(in_dim, out_dim))
    return nn.Sequential(Standardize(in_dim), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


def fit_standardizer(net, X) -> None:
    """Set the first Standardize module found in ``net`` from training features ``X`` (a tensor)."""
    for m in net.modules():
        if hasattr(m, "inv_std") and hasattr(m, "fit"):
            m.fit(X)
            return


class HeadHasher(DeepHasher):
    """Base of the survey's head-only hashers: an MLP head, codes ``bit = output >= 0``."""

    threshold = 0.0
    default_train: dict[str, Any] = {"n_iters": 1500, "lr": 1e-3, "batch_size": 256, "eval_every": 500, "patience": 2,
                                     "weight_decay": 1e-5}

    def __init__(self, n_bits: int = 64, *, hidden: int = 512, dropout: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.hidden, self.dropout = hidden, dropout

    def head(self, in_dim: int, out_dim: int | None = None):
        return mlp_head(in_dim, self.n_bits if out_dim is None else out_dim, self.hidden, self.dropout)

    def build_network(self, in_dim: int):
        return self.head(in_dim)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        e2e = getattr(self, "e2e_", None)
        if e2e is None:
            fit_standardizer(self.net_, self.X_train_)
        else:  # end to end: standardise with the pretrained trunk's descriptors of the training images
            import torch

            fit_standardizer(self.net_, torch.from_numpy(e2e.descriptors(X)))


class ClassHeadHasher(HeadHasher):
    """A head hasher that needs class indices (a classifier or one target per class)."""

    def prepare(self, X, y, rng):
        y = np.asarray(y)
        if y.ndim == 1:
            self.classes_, yi = np.unique(y, return_inverse=True)
            self.n_classes_ = len(self.classes_)
            y = yi.astype(np.int64)
        elif y.ndim == 2:
            self.n_classes_ = y.shape[1]
            y = y.astype(np.float32)
        else:
            raise ConfigError(f"labels must be 1-D class ids or 2-D multi-hot; got shape {y.shape}")
        if self.n_classes_ < 2:
            raise ConfigError(f"{self.name} needs at least 2 classes; got {self.n_classes_}")
        super().prepare(X, y, rng)

    def extra_state(self):
        return {"n_classes": int(self.n_classes_)}

    def load_state_dict(self, state):
        self.n_classes_ = int(state["extra.n_classes"])
        super().load_state_dict(state)
