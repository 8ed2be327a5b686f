"""ITQ (Gong & Lazebnik, CVPR 2011): PCA to K dims, then an orthogonal rotation that minimises quantisation error."""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers.base import Hasher, register_hasher


@register_hasher("itq")
class ITQ(Hasher):
    family = "baseline (unsupervised)"
    reference = {"map": 0.162, "setting": "CIFAR-10 12 bits, GIST features (aurora paper's table)"}

    def __init__(self, n_bits: int = 64, *, n_iter: int = 50, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)
        self.n_iter = n_iter

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "ITQ":
        self._validate()
        X = self._check_X(X, fitting=True).astype(np.float64)
        if self.n_bits > X.shape[1]:
            raise ConfigError(f"ITQ needs n_bits <= feature dim; got n_bits={self.n_bits}, dim={X.shape[1]}")
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        cov = Xc.T @ Xc / max(1, len(Xc) - 1)
        evals, evecs = np.linalg.eigh(cov)
        self.pca_ = evecs[:, np.argsort(evals)[::-1][: self.n_bits]]
        V = Xc @ self.pca_
        rng = np.random.default_rng(self.seed)
        R, _ = np.linalg.qr(rng.standard_normal((self.n_bits, self.n_bits)))
        for _ in range(self.n_iter):
            B = np.where(V @ R >= 0, 1.0, -1.0)
            U, _, Wt = np.linalg.svd(B.T @ V)
            R = (U @ Wt).T
        self.rotation_ = R
        self.mean_ = self.mean_.astype(np.float32)
        self.pca_ = self.pca_.astype(np.float32)
        self.rotation_ = self.rotation_.astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_X(X)
        return ((X - self.mean_) @ self.pca_) @ self.rotation_

    def state_dict(self):
        return {**super().state_dict(), "mean_": self.mean_, "pca_": self.pca_, "rotation_": self.rotation_}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mean_, self.pca_, self.rotation_ = (np.asarray(state[k]) for k in ("mean_", "pca_", "rotation_"))
