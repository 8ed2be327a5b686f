"""What an encoding engine is: archive + model in, the codes, features and ids an index is built from out.

An engine decides *where* images are decoded, embedded and hashed (this process, or a Ray
cluster); *how* is always the model's: :class:`deephash.model.HashModel` and
:meth:`deephash.model.HashModel.encode_batches`. Engines are created by name from a registry
(``create_engine("ray", workers=4)``), so the CLI and :func:`deephash.api.build_index` only
pass a name and options through.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np

from deephash.errors import ConfigError
from deephash.registry import Registry

#: True: a progress bar on stderr; False: none; a callable: called with (images done, images in all)
#: each time a piece of work finishes
Progress = Union[bool, Callable[[int, int], None]]


@dataclass
class EncodedArchive:
    """An archive encoded by a model: row j of ``codes`` / ``features`` is archive position ``ids[j]``.

    ``ids`` ascend; ``failed`` lists ``(archive path, reason)`` of the images that could not be
    decoded, in archive order; ``stats`` says how the engine spent its time (JSON-ready)."""

    codes: np.ndarray  # uint8 (n, K/8)
    features: np.ndarray  # float32 (n, D)
    ids: np.ndarray  # int64 (n,)
    failed: list[tuple[str, str]]
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class Engine:
    """Encodes a whole archive with a model. Subclasses implement :meth:`encode`; the constructor
    takes the engine's options (keyword-only) and checks them."""

    name = "engine"

    def encode(self, archive, checkpoint: str | os.PathLike, model, *, positions: np.ndarray | None = None,
               progress: Progress = True) -> EncodedArchive:
        """Encode the images of ``archive`` (an :class:`~deephash.data.ImageArchive`) at ``positions``
        (ascending archive positions; default: every image) with ``model`` (the
        :class:`~deephash.model.HashModel` loaded from ``checkpoint``). ``ids`` of the result are
        archive positions, whichever were asked (``deephash index --update`` asks for the new ones)."""
        raise NotImplementedError


ENGINES: Registry[Engine] = Registry("engine")
register_engine = ENGINES.register


def create_engine(name: str, **options: Any) -> Engine:
    """The engine registered as ``name``, built with ``options``; an option it does not take is refused
    with the list of those it does."""
    cls = ENGINES.get(name)
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind == p.KEYWORD_ONLY]
    known = {p.name for p in params}
    extra = sorted(set(options) - known)
    if extra:
        takes = ", ".join(sorted(known)) or "no options"
        raise ConfigError(f"the {name} engine takes no option {', '.join(extra)}; it takes: {takes}")
    return cls(**options)


def list_engines(pattern: str = "*") -> list[str]:
    return ENGINES.names(pattern)


def check_positions(positions: np.ndarray | None, n: int) -> np.ndarray:
    """``positions`` as ascending distinct int64 archive positions in ``[0, n)`` (None: all ``n``)."""
    if positions is None:
        return np.arange(n, dtype=np.int64)
    p = np.asarray(positions, np.int64).ravel()
    if len(p) and (p.min() < 0 or p.max() >= n or np.any(np.diff(p) <= 0)):
        raise ConfigError(f"positions must be ascending, distinct and in [0, {n}); got {len(p)} from {p.min()} to {p.max()}")
    return p


def report_progress(progress: Progress, done: int, total: int) -> None:
    """Call a progress callable (a bool ``progress`` is the engine's bar, handled by the engine)."""
    if callable(progress):
        progress(done, total)
