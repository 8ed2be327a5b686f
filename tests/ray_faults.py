"""A fault for the Ray engine's tests: a Ray worker process that dies in the middle of a shard, once.

:func:`dying_worker_hook` makes a ``worker_process_setup_hook`` (Ray runs it in every worker
process it starts). It wraps the model's batch encoder so that, while the file ``arm`` exists,
the second batch a worker process encodes makes the process exit at once — after its first
batch of that shard, before the shard's result is returned. Only the process that renames
``arm`` to ``arm + ".fired"`` dies (a rename succeeds once), so the fault happens exactly once.
"""
from __future__ import annotations

import os


def _install(arm: str) -> None:
    from deephash.encoding.stream import StreamEncoder

    original = StreamEncoder._finish  # the backbone + hasher step, once per batch
    calls = {"n": 0}

    def finish(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 2 == 0 and os.path.exists(arm):
            try:
                os.rename(arm, arm + ".fired")
            except FileNotFoundError:  # another worker took it
                pass
            else:
                with open(arm + ".fired", "w") as fh:
                    fh.write(str(os.getpid()))
                os._exit(1)  # the worker dies mid-shard: no exception, no result
        return original(self, *args, **kwargs)

    StreamEncoder._finish = finish


def dying_worker_hook(arm: str | os.PathLike):
    """The setup hook for ``ray.init(runtime_env={"worker_process_setup_hook": ...})`` (Ray wants a named function)."""
    arm = str(arm)

    def dying_worker_setup() -> None:
        _install(arm)

    return dying_worker_setup
