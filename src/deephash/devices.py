"""Where torch work runs: the one device-selection rule, shared by training, fine-tuned
backbones and evaluation (never a hard-coded GPU)."""
from __future__ import annotations

from deephash.errors import ConfigError


def pick_device(name: str = "auto"):
    """'auto' -> CUDA when available, else Apple MPS, else CPU; never hard-coded."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev
