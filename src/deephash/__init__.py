"""deephash: content-based image retrieval with deep hashing."""
from __future__ import annotations

__version__ = "0.1.0"

from deephash.errors import (  # noqa: E402
    BackboneUnavailableError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
    DataError,
    DeepHashError,
    IndexFormatError,
    NotFittedError,
    UnknownNameError,
)

__all__ = [
    "__version__",
    "DeepHashError",
    "DataError",
    "ConfigError",
    "UnknownNameError",
    "NotFittedError",
    "IndexFormatError",
    "BackboneUnavailableError",
    "BackendError",
    "BackendUnavailableError",
]
