"""KSH — Supervised Hashing with Kernels (Liu, Wang, Ji, Jiang & Chang, CVPR 2012).

Each bit is a kernel function over ``m`` anchors drawn from the training data,

    h_k(x) = sgn( k̄(x)ᵀ a_k ),   k̄(x)_j = exp(−‖x − x_(j)‖² / (2σ²)) − μ_j

(``μ_j`` the mean of anchor ``j``'s kernel over the training data, so every bit is zero-centred). On
``l`` labelled points with ``S_ij = +1`` for pairs sharing a label and ``−1`` otherwise, the code
inner products should reproduce the similarities: with ``r`` bits and ``H ∈ {−1, +1}^{l×r}``,

    min_A  Q(A) = ‖ H Hᵀ − r S ‖²_F.

Greedy, bit by bit: with the residue ``R_{k−1} = r S − Σ_{t<k} h_t h_tᵀ``, bit ``k`` maximises
``h_kᵀ R_{k−1} h_k``, ``h_k = sgn(K̄ a_k)`` (``K̄`` the ``l × m`` centred kernel matrix):

1. spectral relaxation (initialisation): drop the sign, ``max aᵀ K̄ᵀ R K̄ a`` s.t. ``aᵀ K̄ᵀ K̄ a = l``
   — the top generalised eigenvector of ``(K̄ᵀ R K̄, K̄ᵀ K̄)`` (a small ridge keeps ``K̄ᵀ K̄`` definite);
2. smoothed gradient descent from there: replace ``sgn`` by ``φ(x) = 2 / (1 + e^{−x}) − 1`` and
   minimise ``−φ(K̄ a)ᵀ R φ(K̄ a)``, gradient ``−K̄ᵀ((R b) ⊙ (1 − b²))`` with ``b = φ(K̄ a)``, step sizes
   by backtracking (Armijo);
3. keep whichever of the two gives the larger discrete ``sgn(K̄ a)ᵀ R sgn(K̄ a)``, then
   ``R_k = R_{k−1} − h_k h_kᵀ``.

``objective_[k]`` is ``Q`` after ``k + 1`` bits (``= ‖R_k‖²_F``). Paper settings: 300 anchors,
1,000 or 2,000 labelled points; σ here is the mean distance from training points to the anchors.
Codes of new points: bit = ``k̄(x)ᵀ a ≥ 0`` (``sgn(0)`` taken as +1 throughout).
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers.base import Hasher, register_hasher

_PARAM_RULES = {  # name: (check, what is expected)
    "n_anchors": (lambda v: int(v) == v and v >= 2, "an integer >= 2"),
    "n_labelled": (lambda v: int(v) == v and v >= 2, "an integer >= 2"),
    "n_iter": (lambda v: int(v) == v and v >= 0, "an integer >= 0"),
    "sigma": (lambda v: v is None or v > 0, "None (the mean anchor distance) or > 0"),
}


def smooth_sign(x: np.ndarray) -> np.ndarray:
    """``φ(x) = 2 / (1 + e^{−x}) − 1`` (= tanh(x / 2)), the smooth surrogate of sgn."""
    return np.tanh(0.5 * x)


def signs(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0)


@register_hasher("ksh")
class KSH(Hasher):
    supervised = True
    family = "baseline (supervised, kernel)"
    reference = {"map": 0.356, "setting": "CIFAR-10, 48 bits, GIST features (the aurora paper's table: "
                 "0.303-0.356 at 12-48 bits)", "checked": "from methods.md"}

    def __init__(self, n_bits: int = 64, *, n_anchors: int = 300, n_labelled: int = 2000, sigma: float | None = None,
                 n_iter: int = 100, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)
        self.n_anchors, self.n_labelled, self.sigma, self.n_iter = n_anchors, n_labelled, sigma, n_iter

    # ------------------------------------------------------------------ features
    def _raw_kernel(self, X: np.ndarray) -> np.ndarray:
        A = self.anchors_
        out = np.empty((len(X), len(A)))
        for s in range(0, len(X), 4096):
            x = X[s : s + 4096]
            d = np.maximum((x * x).sum(1)[:, None] - 2.0 * (x @ A.T) + (A * A).sum(1)[None, :], 0.0)
            out[s : s + 4096] = np.exp(-d / (2.0 * self.sigma_ ** 2))
        return out

    def kernel_features(self, X: np.ndarray) -> np.ndarray:
        """Centred RBF anchor features ``k̄(x)`` ``(n, n_anchors)`` float64."""
        return self._raw_kernel(self._check_X(X).astype(np.float64)) - self.kernel_mean_

    @staticmethod
    def objective(H: np.ndarray, S: np.ndarray) -> float:
        """``‖H Hᵀ − r S‖²_F`` for codes ``H`` (l, r) in ±1 and pairwise labels ``S`` (l, l) in ±1."""
        return float(((H @ H.T - H.shape[1] * S) ** 2).sum())

    @staticmethod
    def pair_labels(y: np.ndarray) -> np.ndarray:
        """``S``: +1 for pairs sharing a label (multi-hot: at least one), −1 otherwise."""
        y = np.asarray(y)
        same = (y[:, None] == y[None, :]) if y.ndim == 1 else ((y.astype(np.float64) @ y.T.astype(np.float64)) > 0)
        return np.where(same, 1.0, -1.0)

    # ------------------------------------------------------------------ learning
    def _validate(self) -> None:
        super()._validate()
        for name, (ok, expected) in _PARAM_RULES.items():
            v = getattr(self, name)
            try:
                good = bool(ok(v))
            except (TypeError, ValueError):
                good = False
            if not good:
                raise ConfigError(f"ksh {name} must be {expected}; got {v!r}")

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "KSH":
        self._validate()
        X = self._check_X(X, fitting=True).astype(np.float64)
        y = self._check_y(X, y)
        if y.ndim not in (1, 2):
            raise ConfigError(f"ksh takes 1-D class labels or 2-D multi-hot labels; got shape {y.shape}")
        rng = np.random.default_rng(self.seed)
        m = min(int(self.n_anchors), len(X))
        self.anchors_ = X[np.sort(rng.choice(len(X), size=m, replace=False))]
        if self.sigma is None:
            sub = X[rng.choice(len(X), size=min(len(X), 2000), replace=False)]
            A = self.anchors_
            d = np.maximum((sub * sub).sum(1)[:, None] - 2.0 * (sub @ A.T) + (A * A).sum(1)[None, :], 0.0)
            self.sigma_ = float(np.sqrt(d).mean())
        else:
            self.sigma_ = float(self.sigma)
        self.kernel_mean_ = np.zeros(m)
        self.kernel_mean_ = self._raw_kernel(X).mean(0)
        lab = np.sort(rng.choice(len(X), size=min(int(self.n_labelled), len(X)), replace=False))
        Kl = self._raw_kernel(X[lab]) - self.kernel_mean_
        S = self.pair_labels(y[lab])
        self.projection_, self.objective_ = self._greedy_bits(Kl, S)
        return self

    def _greedy_bits(self, Kl: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        l, m = Kl.shape
        r = self.n_bits
        R = r * S
        G = Kl.T @ Kl
        G += 1e-6 * np.trace(G) / m * np.eye(m)
        L = np.linalg.cholesky(G)
        Linv = np.linalg.inv(L)
        M = Kl.T @ R @ Kl                     # K̄ᵀ R K̄, updated as R shrinks
        A = np.zeros((m, r))
        objective = []
        for k in range(r):
            # 1. spectral relaxation: top eigenvector of L⁻¹ M L⁻ᵀ, mapped back, scaled to aᵀ G a = l
            w, V = np.linalg.eigh(Linv @ M @ Linv.T)
            a0 = Linv.T @ V[:, -1]
            a0 *= np.sqrt(l / max(float(a0 @ G @ a0), 1e-300))
            # 2. sigmoid-smoothed gradient descent from there
            a1 = self._smoothed_descent(Kl, R, a0)
            # 3. the better of the two by the discrete score
            h0, h1 = signs(Kl @ a0), signs(Kl @ a1)
            a, h = (a1, h1) if h1 @ R @ h1 > h0 @ R @ h0 else (a0, h0)
            A[:, k] = a
            R -= np.outer(h, h)
            kh = Kl.T @ h
            M -= np.outer(kh, kh)
            objective.append(float((R * R).sum()))
        return A, np.asarray(objective)

    def _smoothed_descent(self, Kl: np.ndarray, R: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Minimise ``f(a) = −φ(K̄a)ᵀ R φ(K̄a)`` by gradient descent with backtracking line search."""
        def f_and_grad(a):
            b = smooth_sign(Kl @ a)
            Rb = R @ b
            return -float(b @ Rb), -Kl.T @ (Rb * (1.0 - b * b))

        f, g = f_and_grad(a)
        step = 1.0 / max(np.abs(g).max(), 1e-12)
        for _ in range(int(self.n_iter)):
            gg = float(g @ g)
            if gg == 0.0:
                break
            while True:
                a_new = a - step * g
                f_new, g_new = f_and_grad(a_new)
                if f_new <= f - 1e-4 * step * gg or step < 1e-12:
                    break
                step *= 0.5
            if step < 1e-12:
                break
            converged = abs(f - f_new) <= 1e-6 * max(abs(f), 1.0)
            a, f, g = a_new, f_new, g_new
            step *= 2.0
            if converged:
                break
        return a

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self.kernel_features(X) @ self.projection_).astype(np.float32)

    def state_dict(self):
        return {**super().state_dict(), "anchors_": self.anchors_, "sigma_": float(self.sigma_),
                "kernel_mean_": self.kernel_mean_, "projection_": self.projection_, "objective_": self.objective_}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for k in ("anchors_", "kernel_mean_", "projection_", "objective_"):
            setattr(self, k, np.asarray(state[k]))
        self.sigma_ = float(state["sigma_"])
