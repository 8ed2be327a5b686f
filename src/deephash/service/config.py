"""ServiceConfig: the knobs of ``deephash serve``, checked once at start-up."""
from __future__ import annotations

from dataclasses import dataclass, field

from deephash.data.images import DEFAULT_MAX_PIXELS, max_pixels_limit  # noqa: F401  (one limit everywhere)
from deephash.errors import ConfigError

#: Default cap on an uploaded file (bytes). The pixel limit is the one of deephash.data.images.
DEFAULT_MAX_UPLOAD_BYTES = 10 * 2**20


@dataclass(frozen=True)
class ServiceConfig:
    """What the service accepts. ``api_key`` guards writes (and reads when ``read_key_required``)."""

    api_key: str | None = None
    read_key_required: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = field(default_factory=max_pixels_limit)  # $DEEPHASH_MAX_PIXELS or 40 MP, as everywhere
    max_k: int = 1000
    thumb_size: int = 128
    thumb_cache_items: int = 4096
    thumb_cache_bytes: int = 64 * 2**20
    #: the index file is rewritten (the journal folded in) once the journal exceeds
    #: max(journal_compact_min_bytes, journal_compact_ratio x the index file's size)
    journal_compact_min_bytes: int = 8 * 2**20
    journal_compact_ratio: float = 0.25

    def __post_init__(self) -> None:
        checks = [
            (self.api_key is None or len(self.api_key) >= 8, f"api_key must be at least 8 characters; got {0 if self.api_key is None else len(self.api_key)}"),
            (not self.read_key_required or self.api_key is not None, "read_key_required needs an api_key"),
            (1024 <= self.max_upload_bytes <= 2**30, f"max_upload_bytes must be between 1 KiB and 1 GiB; got {self.max_upload_bytes}"),
            (1 <= self.max_pixels <= 2**31, f"max_pixels must be between 1 and 2^31; got {self.max_pixels}"),
            (1 <= self.max_k <= 100_000, f"max_k must be between 1 and 100000; got {self.max_k}"),
            (16 <= self.thumb_size <= 512, f"thumb_size must be between 16 and 512; got {self.thumb_size}"),
            (self.journal_compact_min_bytes >= 0, f"journal_compact_min_bytes must be >= 0; got {self.journal_compact_min_bytes}"),
            (self.journal_compact_ratio >= 0, f"journal_compact_ratio must be >= 0; got {self.journal_compact_ratio}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
