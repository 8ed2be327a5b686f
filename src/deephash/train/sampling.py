"""Mini-batch samplers over labelled feature rows (single-label int or multi-hot labels)."""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError


def _as_multi_hot(y: np.ndarray) -> np.ndarray:
    if y.ndim == 2:
        return y.astype(bool)
    classes = np.unique(y)
    return y[:, None] == classes[None, :]


class TripletSampler:
    """Random triplets: anchor, a positive sharing a label (not the anchor itself), a negative sharing none."""

    def __init__(self, y: np.ndarray, rng: np.random.Generator) -> None:
        self.y = np.asarray(y)
        self.rng = rng
        self.single = self.y.ndim == 1
        if self.single:
            self.by_class = {c: np.flatnonzero(self.y == c) for c in np.unique(self.y)}
            usable = [c for c, ix in self.by_class.items() if len(ix) >= 2]
            if not usable or len(self.by_class) < 2:
                raise ConfigError("triplet training needs at least 2 classes and a class with >= 2 images")
            self.anchors = np.concatenate([self.by_class[c] for c in usable])
        else:
            self.mh = _as_multi_hot(self.y)
            self.anchors = np.flatnonzero(self.mh.any(axis=1))

    def sample(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self.rng.choice(self.anchors, size=m)
        p, n = np.empty(m, np.int64), np.empty(m, np.int64)
        for i, ai in enumerate(a):
            if self.single:
                same = self.by_class[self.y[ai]]
                while True:
                    p[i] = same[self.rng.integers(len(same))]
                    if p[i] != ai:
                        break
                while True:
                    n[i] = self.rng.integers(len(self.y))
                    if self.y[n[i]] != self.y[ai]:
                        break
            else:
                share = self.mh @ self.mh[ai]
                pos = np.flatnonzero(share > 0)
                pos = pos[pos != ai]
                neg = np.flatnonzero(share == 0)
                if not len(pos) or not len(neg):
                    p[i], n[i] = ai, self.rng.integers(len(self.y))
                    continue
                p[i], n[i] = self.rng.choice(pos), self.rng.choice(neg)
        return a, p, n


def stratified_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (train, validation), ``fraction`` of each class to validation (at least 1 if the class has 2+)."""
    y = np.asarray(y)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1); got {fraction}")
    keys = y if y.ndim == 1 else np.argmax(y, axis=1)
    val = []
    for c in np.unique(keys):
        ix = rng.permutation(np.flatnonzero(keys == c))
        nv = int(round(len(ix) * fraction)) if len(ix) >= 2 else 0
        nv = max(nv, 1) if len(ix) >= 2 else 0
        val.append(ix[:nv])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


class RankingTripletSampler:
    """Deep Ranking's triplets (Wang et al. 2014; seed 002), single-label data.

    Every image of a class is a query; its positives are other images of its class, at most
    ``pos_cap`` per query (distinct, never the query itself); each triplet's negative is drawn
    uniformly from the other classes. One pass over the ``(query, positive)`` pairs, in a random
    order, is one epoch; the next epoch redraws them.

    Positives of a query: the ``pos_cap`` images that follow it in a random permutation of its
    class (cyclically) -- distinct and uniformly random, and drawn for all queries at once.
    """

    def __init__(self, y: np.ndarray, rng: np.random.Generator, *, pos_cap: int = 4) -> None:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ConfigError("deep-ranking triplet sampling needs single-label (1-D) labels")
        if pos_cap < 1:
            raise ConfigError(f"pos_cap must be >= 1; got {pos_cap}")
        self.y, self.rng, self.pos_cap = y, rng, int(pos_cap)
        self.by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
        if len(self.by_class) < 2 or all(len(ix) < 2 for ix in self.by_class.values()):
            raise ConfigError("triplet training needs at least 2 classes and a class with >= 2 images")
        self._pairs = np.zeros((0, 2), np.int64)
        self._pos = 0
        self.epochs = 0

    def _new_epoch(self) -> None:
        pairs = []
        for ix in self.by_class.values():
            n = len(ix)
            if n < 2:
                continue
            perm = self.rng.permutation(ix)
            for s in range(1, min(self.pos_cap, n - 1) + 1):
                pairs.append(np.stack([perm, np.roll(perm, -s)], axis=1))
        self._pairs = self.rng.permutation(np.concatenate(pairs))
        self._pos = 0
        self.epochs += 1

    def _negatives(self, q: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(len(self.y), size=len(q))
        bad = self.y[neg] == self.y[q]
        while bad.any():
            neg[bad] = self.rng.integers(len(self.y), size=int(bad.sum()))
            bad = self.y[neg] == self.y[q]
        return neg

    def sample(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``m`` triplets ``(query, positive, negative)`` as index arrays."""
        out = []
        need = m
        while need > 0:
            if self._pos >= len(self._pairs):
                self._new_epoch()
            take = self._pairs[self._pos : self._pos + need]
            self._pos += len(take)
            need -= len(take)
            out.append(take)
        qp = np.concatenate(out)
        return qp[:, 0], qp[:, 1], self._negatives(qp[:, 0])
