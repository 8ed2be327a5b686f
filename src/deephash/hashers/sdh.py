"""SDH — Supervised Discrete Hashing (Shen, Shen, Liu & Shen, CVPR 2015).

Features go through an RBF anchor map ``phi(x)_i = exp(-||x - a_i||^2 / (2 sigma^2))`` over ``n_anchors``
training points drawn at random (centred on the training mean), and the codes ``B in {-1, +1}^{n x L}``
solve

    min_{B, W, P}  ||Y - B W||^2 + lam ||W||^2 + nu ( ||B - phi(X) P||^2 + delta ||P||^2 )

with ``Y`` the one-hot labels (n x C), ``W`` (L x C) a linear classifier on the codes and ``P`` (m x L)
the hash function. Alternating minimisation, each block exactly:

- P-step: ridge regression ``P = (phi^T phi + delta I)^-1 phi^T B``;
- W-step: ``W = (B^T B + lam I)^-1 B^T Y``;
- B-step: discrete cyclic coordinate descent — one bit column at a time, the others fixed,
  ``b_l = sign(q_l - B' W' w_l^T)`` with ``Q = Y W^T + nu phi P`` (``B'``, ``W'``: the other columns/rows);
  a zero argument keeps the current bit, so every step is a minimiser and the objective never rises.

The paper's defaults: 1,000 anchors, lam = 1, nu = 1e-5, 5 outer iterations; ``delta`` (the paper's
regulariser on the hash projection) is not fixed there — 1e-2 here. ``sigma`` is the mean distance from
training points to the anchors. ``objective_`` records the objective after every outer iteration
(the first entry after the initial P- and W-steps). Codes of new points: ``sign(phi(x) P)``.
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers.base import Hasher, register_hasher


@register_hasher("sdh")
class SDH(Hasher):
    supervised = True
    family = "baseline (supervised, discrete)"
    reference = {"map": None,
                 "setting": "SDH reports CIFAR-10 on 512-d GIST under its own split; no figure is copied here "
                            "until checked against the paper"}

    def __init__(self, n_bits: int = 64, *, n_anchors: int = 1000, sigma: float | None = None, lam: float = 1.0,
                 nu: float = 1e-5, delta: float = 1e-2, n_outer: int = 5, n_dcc: int = 5, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)
        self.n_anchors, self.sigma, self.lam, self.nu, self.delta = n_anchors, sigma, lam, nu, delta
        self.n_outer, self.n_dcc = n_outer, n_dcc

    # ------------------------------------------------------------------ features
    def _sq_dists(self, X: np.ndarray) -> np.ndarray:
        A = self.anchors_
        d = (X * X).sum(1)[:, None] - 2.0 * (X @ A.T) + (A * A).sum(1)[None, :]
        return np.maximum(d, 0.0)

    def kernel_features(self, X: np.ndarray) -> np.ndarray:
        """Centred RBF anchor features ``(n, n_anchors)`` float64."""
        X = self._check_X(X).astype(np.float64)
        out = np.empty((len(X), len(self.anchors_)))
        for s in range(0, len(X), 4096):
            out[s : s + 4096] = np.exp(-self._sq_dists(X[s : s + 4096]) / (2.0 * self.sigma_ ** 2))
        return out - self.phi_mean_

    def objective(self, phi: np.ndarray, B: np.ndarray, Y: np.ndarray, W: np.ndarray, P: np.ndarray) -> float:
        """The SDH objective for the given blocks (what every step of ``fit`` decreases)."""
        return float(((Y - B @ W) ** 2).sum() + self.lam * (W ** 2).sum()
                     + self.nu * (((B - phi @ P) ** 2).sum() + self.delta * (P ** 2).sum()))

    # ------------------------------------------------------------------ learning
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "SDH":
        self._validate()
        X = self._check_X(X, fitting=True).astype(np.float64)
        y = self._check_y(X, y)
        if y.ndim != 1:
            raise ConfigError(f"sdh takes single-label data (1-D labels); got labels of shape {y.shape}")
        if self.n_anchors < 1 or self.n_outer < 1 or self.n_dcc < 1:
            raise ConfigError(f"n_anchors, n_outer and n_dcc must be >= 1; got {self.n_anchors}, {self.n_outer}, {self.n_dcc}")
        rng = np.random.default_rng(self.seed)
        classes, yi = np.unique(y, return_inverse=True)
        Y = np.eye(len(classes))[yi]
        m = min(self.n_anchors, len(X))
        self.anchors_ = X[np.sort(rng.choice(len(X), size=m, replace=False))]
        if self.sigma is None:
            sub = X[rng.choice(len(X), size=min(len(X), 2000), replace=False)]
            self.sigma_ = float(np.sqrt(self._sq_dists(sub)).mean())
        else:
            self.sigma_ = float(self.sigma)
        self.phi_mean_ = np.zeros(m)
        phi = self.kernel_features(X)
        self.phi_mean_ = phi.mean(axis=0)
        phi -= self.phi_mean_

        L = self.n_bits
        gram_inv = np.linalg.inv(phi.T @ phi + self.delta * np.eye(m))  # (m, m): the P-step is gram_inv @ phi^T B
        B = np.where(rng.standard_normal((len(X), L)) >= 0, 1.0, -1.0)
        P = gram_inv @ (phi.T @ B)
        W = np.linalg.solve(B.T @ B + self.lam * np.eye(L), B.T @ Y)
        self.objective_ = [self.objective(phi, B, Y, W, P)]
        for _ in range(self.n_outer):
            B = self._dcc(B, Y @ W.T + self.nu * (phi @ P), W)
            P = gram_inv @ (phi.T @ B)
            W = np.linalg.solve(B.T @ B + self.lam * np.eye(L), B.T @ Y)
            self.objective_.append(self.objective(phi, B, Y, W, P))
        self.projection_ = P
        self.W_ = W
        self.classes_ = classes
        self.objective_ = np.asarray(self.objective_)
        return self

    def _dcc(self, B: np.ndarray, Q: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Discrete cyclic coordinate descent on B for ``||Y - B W||^2 + nu ||B - F||^2`` (Q = Y W^T + nu F)."""
        B = B.copy()
        BW = B @ W
        for _ in range(self.n_dcc):
            for l in range(B.shape[1]):
                BW -= np.outer(B[:, l], W[l])
                arg = Q[:, l] - BW @ W[l]
                B[:, l] = np.where(arg > 0, 1.0, np.where(arg < 0, -1.0, B[:, l]))
                BW += np.outer(B[:, l], W[l])
        return B

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self.kernel_features(X) @ self.projection_).astype(np.float32)

    def state_dict(self):
        return {**super().state_dict(), "anchors_": self.anchors_, "sigma_": float(self.sigma_),
                "phi_mean_": self.phi_mean_, "projection_": self.projection_, "W_": self.W_,
                "classes_": self.classes_, "objective_": self.objective_}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for k in ("anchors_", "phi_mean_", "projection_", "W_", "classes_", "objective_"):
            setattr(self, k, np.asarray(state[k]))
        self.sigma_ = float(state["sigma_"])
