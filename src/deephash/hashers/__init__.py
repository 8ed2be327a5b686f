"""Hashing methods, one file each, registered by name (every module in this folder is imported)."""
import importlib
import pkgutil

from deephash.hashers.base import HASHERS, Hasher, create_hasher, list_hashers, load_hasher, register_hasher
from deephash.hashers._training_size import SmallTrainingSetWarning, minimum_training_images
from deephash.hashers.deep import DeepHasher

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "deep") and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Hasher", "DeepHasher", "HASHERS", "create_hasher", "list_hashers", "load_hasher", "register_hasher",
           "SmallTrainingSetWarning", "minimum_training_images"]
