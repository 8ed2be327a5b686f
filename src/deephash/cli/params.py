"""``--param KEY=VALUE`` options: values are JSON when they parse as JSON, else strings."""
from __future__ import annotations

import json
from typing import Any, Iterable

from deephash.errors import ConfigError


def parse_params(params: Iterable[str]) -> dict[str, Any]:
    """``["n_iters=3000", "loss_variant=paper"]`` -> ``{"n_iters": 3000, "loss_variant": "paper"}``."""
    out: dict[str, Any] = {}
    for p in params:
        if "=" not in p:
            raise ConfigError(f"--param expects KEY=VALUE; got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def training_length(hasher: Any, n_train: int, n_iters: int | None, epochs: float | None) -> int | None:
    """``--iters`` / ``--epochs`` as the Trainer's iteration count (None: the method's default).

    An epoch is ``n_train / batch_size`` iterations (the method's batch size); only methods the
    Trainer trains (or that count their own ``n_iters``) take a length."""
    import math

    if n_iters is None and epochs is None:
        return None
    if not hasattr(hasher, "n_iters"):
        raise ConfigError(f"{hasher.name} is not trained by iterations, so --iters/--epochs do not apply to it")
    if n_iters is not None:
        return int(n_iters)
    if hasattr(hasher, "trainer_config"):
        batch = hasher.trainer_config().batch_size
    else:
        batch = int(getattr(hasher, "batch_size", 1) or 1)
    return max(1, math.ceil(epochs * n_train / batch))
