"""``--param [METHOD.]KEY=VALUE``: one syntax for every command that takes method hyper-parameters
(train, finetune, bench methods). Values are JSON when they parse as JSON, else strings.

``METHOD.`` says which method a value is for. A command that runs one method accepts ``KEY=VALUE``
alone (or its own method's prefix); a command that runs several needs the prefix, since the same
key can mean different things to different methods."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from deephash.errors import ConfigError

_EXAMPLE = "e.g. --param n_iters=3000 or --param mhcln.n_iters=3000"


def _value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def method_params(params: Iterable[str], methods: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["mhcln.n_iters=3000", "dpsh.lr=1e-4"]`` -> ``{"mhcln": {"n_iters": 3000}, "dpsh": {"lr": 0.0001}}``.

    ``methods``: the methods the command runs (None: every registered one, so a prefix is required)."""
    out: dict[str, dict[str, Any]] = {}
    single = methods[0] if methods is not None and len(methods) == 1 else None
    for p in params:
        key, sep, val = p.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects [METHOD.]KEY=VALUE ({_EXAMPLE}); got {p!r}")
        method, dot, name = key.rpartition(".")
        if not dot:
            if single is None:
                raise ConfigError(f"--param {p!r} does not say which method it is for and this command runs several: "
                                  f"write METHOD.{key}={val}")
            method, name = single, key
        if methods is not None and method not in methods:
            raise ConfigError(f"--param {p!r} is for {method!r}, which this command does not run "
                              f"(it runs {', '.join(methods)})")
        out.setdefault(method, {})[name] = _value(val)
    return out


def parse_params(params: Iterable[str], method: str) -> dict[str, Any]:
    """The ``--param`` values of a command that runs one method: ``KEY=VALUE`` or ``METHOD.KEY=VALUE``."""
    return method_params(params, [method]).get(method, {})


from deephash.api import training_length  # noqa: E402,F401  (the jobs API owns it; kept importable here)
