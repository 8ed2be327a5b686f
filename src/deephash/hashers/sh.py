"""Spectral hashing (Weiss, Torralba & Fergus, NIPS 2008): PCA, then analytical Laplacian eigenfunctions.

The paper's recipe, which this file follows step by step:

1. PCA of the (mean-centred) training features to ``n_pca = min(n_bits, dim)`` directions.
2. Treat the data along each PCA direction ``j`` as uniform on a box ``[a_j, b_j]`` (the range seen in
   training, widened by ``eps``). The 1-D Laplacian eigenfunctions on that interval are
   ``phi_{j,k}(x) = cos(k * pi * (x_j - a_j) / (b_j - a_j))``, ``k = 1, 2, ...``, with eigenvalue
   ``1 - exp(-eps^2 / 2 * omega^2)``, ``omega = k * pi / (b_j - a_j)`` — so a smaller ``omega`` is a
   smoother, better eigenfunction.
3. Keep the ``n_bits`` single-direction eigenfunctions with the smallest ``omega`` (the paper ignores
   the outer-product eigenfunctions, as its reference code does) — a wide direction may give several
   bits (``k = 1, 2, ...``), a narrow one none.
4. Bit = ``phi(x) >= 0`` (``transform`` returns the eigenfunction values, threshold 0).
"""
from __future__ import annotations

import numpy as np

from deephash.hashers.base import Hasher, register_hasher


def _pca(X: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    Xc = X - mean
    evals, evecs = np.linalg.eigh(Xc.T @ Xc / max(1, len(Xc) - 1))
    order = np.argsort(evals)[::-1][:n_components]
    return mean, evecs[:, order]


@register_hasher("sh")
class SpectralHashing(Hasher):
    family = "baseline (unsupervised)"
    # SH's own paper has no CIFAR-10 figure (LabelMe / Peekaboom); this is the number the deep-hashing
    # literature reprints from the CNNH table (Xia et al., AAAI 2014), e.g. Hindawi AM 2017 Table 3.
    reference = {"map": 0.130,
                 "setting": "CIFAR-10 48 bits (0.131 at 12), 512-d GIST, 1,000 queries (100/class) vs the rest, "
                            "mAP; CNNH's table as reprinted by later deep-hashing papers"}

    def __init__(self, n_bits: int = 64, *, eps: float = 1e-6, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)
        self.eps = eps

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "SpectralHashing":
        self._validate()
        X = self._check_X(X, fitting=True).astype(np.float64)
        n_pca = min(self.n_bits, X.shape[1])
        mean, pca = _pca(X, n_pca)
        V = (X - mean) @ pca
        lo = V.min(axis=0) - self.eps
        width = (V.max(axis=0) + self.eps) - lo
        # candidate modes: k = 1..max_k per direction; n_bits modes of the widest direction always suffice
        max_k = np.ceil(self.n_bits * width / width.max()).astype(int) + 1
        dims = np.concatenate([np.full(m, j) for j, m in enumerate(max_k)])
        ks = np.concatenate([np.arange(1, m + 1) for m in max_k])
        omega = ks * np.pi / width[dims]
        pick = np.argsort(omega, kind="stable")[: self.n_bits]
        self.mean_ = mean.astype(np.float32)
        self.pca_ = pca.astype(np.float32)
        self.lo_ = lo  # float64: the eigenfunction phases are kept exact
        self.width_ = width
        self.mode_dims_ = dims[pick].astype(np.int64)
        self.mode_k_ = ks[pick].astype(np.int64)
        self.omega_ = omega[pick]
        return self

    def project(self, X: np.ndarray) -> np.ndarray:
        """PCA coordinates ``(n, n_pca)`` (float64)."""
        X = self._check_X(X)
        return (X - self.mean_).astype(np.float64) @ self.pca_.astype(np.float64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Eigenfunction values ``cos(omega_b * (v_{d_b} - a_{d_b}))`` in [-1, 1], one column per bit."""
        V = self.project(X)
        return np.cos(self.omega_[None, :] * (V[:, self.mode_dims_] - self.lo_[self.mode_dims_][None, :])).astype(np.float32)

    def state_dict(self):
        return {**super().state_dict(), "mean_": self.mean_, "pca_": self.pca_, "lo_": self.lo_, "width_": self.width_,
                "mode_dims_": self.mode_dims_, "mode_k_": self.mode_k_, "omega_": self.omega_}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for k in ("mean_", "pca_", "lo_", "width_", "mode_dims_", "mode_k_", "omega_"):
            setattr(self, k, np.asarray(state[k]))
