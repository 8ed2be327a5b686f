"""Former home of the jobs; kept so that old imports work. Everything lives in :mod:`deephash.api`
(train, encode, build_index, update_index, search), :mod:`deephash.demo` and
:mod:`deephash.data.sampling` now."""
from __future__ import annotations

from deephash.api import IndexUpdate, build_index as _build_index, update_index  # noqa: F401
from deephash.data.sampling import per_class_sample  # noqa: F401
from deephash.demo import DemoConfig, cosine_distances, format_demo_table, run_demo  # noqa: F401
from deephash.index.hash_index import UPLOAD_PREFIX  # noqa: F401


def build_index(archive, checkpoint, out, *, store_features: bool = True, progress: bool = True):
    """Old signature: returns ``(index, skipped)``; use :func:`deephash.api.build_index`."""
    r = _build_index(archive, checkpoint, out, store_features=store_features, progress=progress)
    return r.index, r.skipped
