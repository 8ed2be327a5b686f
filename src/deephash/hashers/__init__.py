"""Hashing methods, one file each, registered by name."""
from deephash.hashers import itq, lsh, mhcln  # noqa: F401  (registers)
from deephash.hashers.base import HASHERS, Hasher, create_hasher, list_hashers, load_hasher, register_hasher
from deephash.hashers.deep import DeepHasher

__all__ = ["Hasher", "DeepHasher", "HASHERS", "create_hasher", "list_hashers", "load_hasher", "register_hasher"]
