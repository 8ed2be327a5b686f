"""The Hasher contract (scikit-learn style) and the hasher registry.

- The constructor only stores hyper-parameters (``n_bits`` first, the rest keyword-only).
- ``fit(X, y)`` learns; what it learns ends in ``_`` or lives in ``state_``.
- ``transform(X)`` gives real-valued activations ``(n, n_bits)``; ``encode(X)`` packed codes
  ``uint8 (n, n_bits/8)``: bit = activation >= ``threshold``.
- ``save(path)`` writes a checkpoint with a typed :class:`~deephash.config.HasherConfig`;
  :func:`load_hasher` rebuilds any registered hasher from the checkpoint alone.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deephash import __version__
from deephash.config import HasherConfig
from deephash.errors import ConfigError, IndexFormatError, NotFittedError
from deephash.codes import check_n_bits, pack_bits
from deephash.registry import Registry
from deephash.hashers.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, payload_digest, read_checkpoint  # noqa: F401
from deephash.utils import atomic_path

HASHERS: Registry[type["Hasher"]] = Registry("hasher")


def register_hasher(name: str):
    """Class decorator: ``@register_hasher("itq")`` makes ``create_hasher("itq", n_bits=64)`` work."""

    def deco(cls: type["Hasher"]) -> type["Hasher"]:
        cls.name = name
        HASHERS.register(name)(cls)
        return cls

    return deco


def create_hasher(name: str, n_bits: int = 64, **params: Any) -> "Hasher":
    return HASHERS.get(name)(n_bits, **params)


def list_hashers(pattern: str = "*") -> list[str]:
    return HASHERS.names(pattern)


class Hasher:
    """Base class: learns a map from float features to K-bit codes."""

    name: ClassVar[str] = "base"
    #: uses labels in fit
    supervised: ClassVar[bool] = False
    #: activation threshold for bits (0.5 for sigmoid outputs, 0.0 for sign/tanh)
    threshold: ClassVar[float] = 0.0
    #: family in the survey's taxonomy (for reports)
    family: ClassVar[str] = "baseline"
    #: the paper's published figure, for tables: (value, "protocol / setting") or None
    reference: ClassVar[dict | None] = None
    #: what ``encode`` returns, which names the index type that holds the codes: "hamming" (packed
    #: bits: HashIndex) or "pq" (one byte per sub-space, ranked through ``query_distances``: PQIndex)
    code_kind: ClassVar[str] = "hamming"

    def __init__(self, n_bits: int = 64, *, seed: int = 0) -> None:
        self.n_bits = n_bits
        self.seed = seed

    # -- hyper-parameters (scikit-learn's get_params: the constructor's arguments)
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items()
                if n not in ("self", "n_bits") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._param_names()}

    def _validate(self) -> None:
        check_n_bits(self.n_bits)

    # -- learning and coding
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "Hasher":
        raise NotImplementedError

    def transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Packed codes ``uint8 (n, n_bits/8)``."""
        return pack_bits(self.transform(X) >= self.threshold)

    def query_distances(self, X_query: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
        """Distances ``(nq, ndb)`` from query *features* to database *codes*, used for ranking.

        Hamming between codes by default; quantisation methods override it with asymmetric
        distances (the query stays a float vector)."""
        from deephash.codes import hamming_matrix

        return hamming_matrix(self.encode(X_query), db_codes)

    def _check_X(self, X: np.ndarray, fitting: bool = False) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ConfigError(f"features must be a 2-D array (n, dim); got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ConfigError("features contain NaN or infinite values")
        if fitting:
            self.in_dim_ = X.shape[1]
            from deephash.hashers._training_size import warn_if_small

            warn_if_small(self.name, self.n_bits, len(X))
        else:
            if not hasattr(self, "in_dim_"):
                raise NotFittedError(f"this {self.name} hasher is not fitted yet; call fit() or load a checkpoint")
            if X.shape[1] != self.in_dim_:
                raise ConfigError(f"features have {X.shape[1]} dimensions; this {self.name} hasher was fitted on {self.in_dim_}")
        return X

    def _check_y(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if y is None:
            raise ConfigError(f"{self.name} is supervised: fit(X, y) needs labels")
        y = np.asarray(y)
        if len(y) != len(X):
            raise ConfigError(f"got {len(X)} feature rows but {len(y)} labels")
        return y

    # -- persistence
    def state_dict(self) -> dict[str, Any]:
        """Learned state: arrays (or tensors) and plain values. Subclasses extend."""
        return {"in_dim_": int(self.in_dim_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.in_dim_ = int(state["in_dim_"])

    def config(self, **extra: Any) -> HasherConfig:
        return HasherConfig(method=self.name, n_bits=self.n_bits, in_dim=getattr(self, "in_dim_", None),
                            params=self.get_params(), seed=self.seed, deephash_version=__version__, **extra)

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Write a checkpoint (torch's safe ``weights_only`` format) atomically; ``extra`` goes in the config."""
        import torch

        if not hasattr(self, "in_dim_"):
            raise NotFittedError(f"cannot save an unfitted {self.name} hasher")
        state = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
                 for k, v in self.state_dict().items()}
        config = self.config(**extra).to_dict()
        blob = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config, "state": state,
                "checksum": payload_digest(config, state)}  # verified on load: a damaged file is refused
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        return path


def require_hamming_codes(hasher: Hasher) -> None:
    """Raise when ``hasher``'s codes are not Hamming codes (a Hamming index would rank them wrongly)."""
    if hasher.code_kind != "hamming":
        raise ConfigError(f"{hasher.name} produces {hasher.code_kind!r} codes, not Hamming codes: Hamming search "
                          "does not apply (a PQIndex ranks them by asymmetric distance: deephash index / search)")


def require_labels(hasher: Hasher, labelled: bool) -> None:
    """Raise before any work when a supervised ``hasher`` is to be trained on an unlabelled archive."""
    if hasher.supervised and not labelled:
        sup = [n for n in list_hashers() if HASHERS.get(n).supervised]
        unsup = [n for n in list_hashers() if not HASHERS.get(n).supervised]
        raise ConfigError(f"{hasher.name} needs labels and this archive has none (a flat folder without a label file); "
                          f"methods that need labels: {', '.join(sup)}; without labels use one of: {', '.join(unsup)}")


def load_hasher(path: str | os.PathLike) -> tuple["Hasher", HasherConfig]:
    """Rebuild a hasher from its checkpoint alone; returns (hasher, config)."""
    blob = read_checkpoint(path)
    try:
        cfg = HasherConfig(**blob["config"])
    except (TypeError, ValueError) as e:
        raise IndexFormatError(f"{path}: the checkpoint's config is not one deephash wrote ({e})") from None
    h = create_hasher(cfg.method, cfg.n_bits, **cfg.params)
    state = {k: (v.numpy() if hasattr(v, "numpy") and not k.startswith(("net.", "trunk.")) else v) for k, v in blob["state"].items()}
    try:
        h.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise IndexFormatError(f"{path}: the checkpoint's state does not fit a {cfg.method} hasher "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    return h, cfg
