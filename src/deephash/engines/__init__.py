"""Encoding engines, by name: where an archive is encoded (``local``: this process; ``ray``: a Ray cluster).

``create_engine("ray", workers=4).encode(archive, checkpoint, model)`` returns the codes,
features, ids and failed images that :func:`deephash.api.build_index` indexes. Importing this
package never imports Ray: the ray engine does, when it is built.
"""
from deephash.engines import local, ray_engine  # noqa: F401  (registers)
from deephash.engines.base import ENGINES, Engine, EncodedArchive, create_engine, list_engines, register_engine

__all__ = ["Engine", "EncodedArchive", "ENGINES", "create_engine", "list_engines", "register_engine"]
