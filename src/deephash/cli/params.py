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


from deephash.api import training_length  # noqa: E402,F401  (the jobs API owns it; kept importable here)
