"""The DeepHashError family: every error a user can act on says what was expected and what came."""
from __future__ import annotations


class DeepHashError(Exception):
    """Base class of every error deephash raises on purpose (the CLI prints these without a traceback)."""


class DataError(DeepHashError):
    """An archive, label file or image is missing or not what was expected."""


class ConfigError(DeepHashError, ValueError):
    """A parameter or configuration value is out of its allowed range."""


class UnknownNameError(DeepHashError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotFittedError(DeepHashError):
    """A model was used before it was trained or loaded."""


class IndexFormatError(DeepHashError):
    """An index or checkpoint file is corrupt, truncated or of an unknown format."""


class OutputError(DeepHashError, OSError):
    """An output file cannot be written (its folder is missing and cannot be made, is not writable, the
    path is a folder, the disk is full); an OSError too, so callers that handle I/O failures still do."""


class MissingDependencyError(DeepHashError, ImportError):
    """An optional package is not installed; the message names the ``pip install`` that fixes it."""


class IndexChangedError(DeepHashError):
    """An index file or its journal changed on disk since this process loaded it (another writer)."""


class BackboneUnavailableError(DeepHashError):
    """A backbone's weights or runtime cannot be found on this machine."""


class BackendError(DeepHashError):
    """A search backend (a database server) refused or failed an operation."""


class BackendUnavailableError(BackendError):
    """A search backend cannot be used here: its optional package is not installed or its server does not answer."""


class EngineError(DeepHashError):
    """An encoding engine (a Ray cluster) failed, or cannot be reached."""


class EngineUnavailableError(EngineError):
    """An encoding engine cannot be used here: its optional package is not installed."""


class ServeError(DeepHashError):
    """A ``deephash serve`` child process exited or did not answer ``/health`` in time."""
