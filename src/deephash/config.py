"""Typed configurations saved with every artifact (features, checkpoints, indexes, reports)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deephash.errors import ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become a backbone's input: resize to ``size``, then ``(x/255 - mean) / std`` per channel."""

    size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        if not (8 <= int(self.size) <= 2048):
            raise ConfigError(f"image size must be between 8 and 2048 pixels; got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {"size": int(self.size), "mean": list(self.mean), "std": list(self.std), "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(int(d["size"]), tuple(d["mean"]), tuple(d["std"]), d.get("resize", "bilinear"))


@dataclass
class HasherConfig:
    """What a trained hasher needs to be rebuilt: saved inside every checkpoint."""

    method: str
    n_bits: int
    in_dim: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    preprocessing: dict[str, Any] | None = None
    seed: int = 0
    deephash_version: str = ""
    #: end-to-end training: the checkpoint holds the fine-tuned backbone (``trunk.*``) and how it was trained
    finetune: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
