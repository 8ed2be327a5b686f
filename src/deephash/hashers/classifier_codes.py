"""Classifier codes (Sablayrolles, Douze, Usunier & Jégou, "How should we evaluate supervised hashing?",
ICASSP 2017): train a classifier on the features and use its *predicted class* as the code.

The paper's point: under the usual CIFAR-10 protocol (query and database drawn from the training classes,
relevance = same class), this trivial "hash" beats published supervised hashing methods, so a table of
supervised methods should carry it.

The classifier: a linear softmax layer (``hidden=0``, default) or a one-hidden-layer MLP (``hidden=H``,
ReLU) on standardised features, trained with Adam and cross-entropy for ``n_iters`` mini-batch steps
(reshuffled every epoch).

How a class becomes K bits (``class_codebook``), written down exactly:

- ``C <= K`` (e.g. CIFAR-10 at 16-64 bits): the class's one-hot vector of length C, repeated
  ``r = K // C`` times, then ``K - r*C`` zero bits. Two codes of the same class are identical
  (Hamming 0); two of different classes are at Hamming ``2r`` — every class is equally far from every
  other one, so a wrongly predicted query ranks all other classes as one tie.
- ``C > K``: the class index in binary (``n = ceil(log2 C)`` bits, most significant first), repeated
  ``K // n`` times, then zero bits; different classes are then at unequal distances. ``C > 2^K`` is an
  error.
"""
from __future__ import annotations

import math

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers.base import Hasher, register_hasher


def class_codebook(n_classes: int, n_bits: int) -> np.ndarray:
    """``uint8 (n_classes, n_bits)`` of {0,1}: row c is the code of class c (see the module docstring)."""
    if n_classes < 1:
        raise ConfigError(f"need at least one class; got {n_classes}")
    book = np.zeros((n_classes, n_bits), dtype=np.uint8)
    if n_classes <= n_bits:
        r = n_bits // n_classes
        for c in range(n_classes):
            book[c, [c + i * n_classes for i in range(r)]] = 1
        return book
    n = max(1, math.ceil(math.log2(n_classes)))
    if n > n_bits:
        raise ConfigError(f"classifier-codes cannot give {n_classes} classes distinct {n_bits}-bit codes "
                          f"(needs at least {n} bits)")
    ids = ((np.arange(n_classes)[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1).astype(np.uint8)
    r = n_bits // n
    book[:, : r * n] = np.tile(ids, (1, r))
    return book


@register_hasher("classifier-codes")
class ClassifierCodes(Hasher):
    supervised = True
    threshold = 0.5
    family = "baseline (classifier, supervised)"
    reference = {"map": None,
                 "setting": "the paper argues with its own CIFAR-10 setting (one-hot of the predicted class, codes "
                            "far shorter than the hashing methods'); no figure is copied here until checked"}

    def __init__(self, n_bits: int = 64, *, hidden: int = 0, n_iters: int = 3000, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 256, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)
        self.hidden, self.n_iters, self.lr = hidden, n_iters, lr
        self.weight_decay, self.batch_size = weight_decay, batch_size

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "ClassifierCodes":
        import torch
        from torch import nn

        self._validate()
        X = self._check_X(X, fitting=True)
        y = self._check_y(X, y)
        if y.ndim != 1:
            raise ConfigError(f"classifier-codes takes single-label data (1-D labels); got labels of shape {y.shape}")
        if self.hidden < 0 or self.n_iters < 1 or self.batch_size < 1:
            raise ConfigError(f"hidden must be >= 0, n_iters and batch_size >= 1; got {self.hidden}, "
                              f"{self.n_iters}, {self.batch_size}")
        classes, yi = np.unique(y, return_inverse=True)
        codebook = class_codebook(len(classes), self.n_bits)  # checked before training
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.maximum(X.std(axis=0), 1e-6).astype(np.float32)
        Xs = torch.from_numpy((X - self.mean_) / self.scale_)
        yt = torch.from_numpy(yi.astype(np.int64))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.hidden:
                net = nn.Sequential(nn.Linear(X.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, len(classes)))
            else:
                net = nn.Sequential(nn.Linear(X.shape[1], len(classes)))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(self.seed)
            loss_fn = nn.CrossEntropyLoss()
            step = 0
            while step < self.n_iters:
                perm = torch.randperm(len(Xs), generator=gen)
                for s in range(0, len(Xs), self.batch_size):
                    idx = perm[s : s + self.batch_size]
                    opt.zero_grad()
                    loss_fn(net(Xs[idx]), yt[idx]).backward()
                    opt.step()
                    step += 1
                    if step >= self.n_iters:
                        break
        self.layers_ = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                        for m in net if isinstance(m, nn.Linear)]
        self.classes_ = classes
        self.codebook_ = codebook
        self.train_accuracy_ = float((self.predict_index(X) == yi).mean())
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Class scores (logits) ``(n, n_classes)``."""
        X = self._check_X(X)
        h = (X - self.mean_) / self.scale_
        for i, (w, b) in enumerate(self.layers_):
            h = h @ w + b
            if i < len(self.layers_) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Index (into ``classes_``) of the predicted class."""
        return np.argmax(self.decision_function(X), axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_index(X)]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The predicted class's codeword as {0., 1.} ``(n, n_bits)`` (threshold 0.5)."""
        return self.codebook_[self.predict_index(X)].astype(np.float32)

    def state_dict(self):
        st = {**super().state_dict(), "mean_": self.mean_, "scale_": self.scale_, "classes_": self.classes_,
              "codebook_": self.codebook_, "n_layers": len(self.layers_)}
        for i, (w, b) in enumerate(self.layers_):
            st[f"layer{i}.weight"], st[f"layer{i}.bias"] = w, b
        return st

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mean_, self.scale_ = np.asarray(state["mean_"]), np.asarray(state["scale_"])
        self.classes_, self.codebook_ = np.asarray(state["classes_"]), np.asarray(state["codebook_"])
        self.layers_ = [(np.asarray(state[f"layer{i}.weight"]), np.asarray(state[f"layer{i}.bias"]))
                        for i in range(int(state["n_layers"]))]
