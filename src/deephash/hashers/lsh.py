"""LSH: random hyperplanes (Charikar's SimHash) on mean-centred features, bit = sign."""
from __future__ import annotations

import numpy as np

from deephash.hashers.base import Hasher, register_hasher


@register_hasher("lsh")
class LSH(Hasher):
    family = "baseline (data-independent)"

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "LSH":
        self._validate()
        X = self._check_X(X, fitting=True)
        rng = np.random.default_rng(self.seed)
        # centring on the training mean is the usual practice in hashing baselines (ITQ's paper does it too)
        self.mean_ = X.mean(axis=0)
        self.projection_ = rng.standard_normal((X.shape[1], self.n_bits)).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_X(X)
        return (X - self.mean_) @ self.projection_

    def state_dict(self):
        return {**super().state_dict(), "mean_": self.mean_, "projection_": self.projection_}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mean_, self.projection_ = np.asarray(state["mean_"]), np.asarray(state["projection_"])
