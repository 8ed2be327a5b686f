"""End-to-end regime: fine-tune the backbone and the method's head together on images.

The shared :class:`~deephash.train.trainer.Trainer` still owns the loop (seeding, logging,
early stopping on a validation split carved from the training data, resumable checkpoints);
this module only changes what the method trains on:

- an :class:`ImageBank` keeps the whole uint8 training set in memory on the training device
  and does the augmentation (random crop with zero padding, horizontal flip), the resize to
  the backbone's input size and the normalisation there, in one batched call: no per-image
  Python work in the loop. Decoding (the only per-image work) runs once, in DataLoader workers;
- the method's network becomes ``head(trunk(images))`` (:class:`EndToEndNet`), where the trunk
  is the backbone as the method wants it (:meth:`DeepHasher.build_trunk`), in ``channels_last``
  with bf16 autocast on CUDA;
- the checkpoint carries the fine-tuned trunk weights (float16) and a ``finetune`` section in
  its config, so :meth:`deephash.model.HashModel.load` / ``deephash encode`` use the fine-tuned
  backbone with the checkpoint alone.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash import __version__
from deephash.config import Preprocessing
from deephash.data.image_bank import ImageBank, run_network
from deephash.errors import ConfigError, DataError

log = logging.getLogger("deephash.finetune")


# ----------------------------------------------------------------------------- decoding
def _decode_one(path: str, size: int) -> tuple[np.ndarray, str | None]:
    from deephash.data.images import load_rgb

    try:
        return load_rgb(path, size), None
    except DataError as e:
        return np.zeros((size, size, 3), np.uint8), str(e)


class _DecodeDataset:
    """Map-style dataset for a torch DataLoader: path -> (uint8 HWC, error or '')."""

    def __init__(self, paths: Sequence[str], size: int) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        arr, err = _decode_one(self.paths[i], self.size)
        return arr, err or ""


def _collate(batch):
    return np.stack([b[0] for b in batch]), [b[1] for b in batch]


def load_image_array(paths: Sequence[str | os.PathLike], size: int, *, workers: int | None = None,
                     progress: bool = False) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode images to ``uint8 (n, size, size, 3)`` (bilinear resize) with DataLoader workers.

    Returns the array and the files that failed ``(path, reason)`` (their rows are zeros)."""
    import torch

    paths = [str(p) for p in paths]
    if workers is None:
        workers = min(8, max(0, (os.cpu_count() or 1) - 1)) if len(paths) >= 2000 else 0
    loader = torch.utils.data.DataLoader(_DecodeDataset(paths, size), batch_size=512, num_workers=workers,
                                         collate_fn=_collate, shuffle=False)
    out = np.empty((len(paths), size, size, 3), np.uint8)
    failed: list[tuple[str, str]] = []
    pos = 0
    for arr, errs in loader:
        out[pos : pos + len(arr)] = arr
        failed += [(paths[pos + i], e) for i, e in enumerate(errs) if e]
        pos += len(arr)
        if progress:
            print(f"\r  decoded {pos}/{len(paths)} images", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return out, failed


def archive_images(archive, indices: np.ndarray | None = None, *, store_size: int | None = None,
                   max_size: int = 256, workers: int | None = None, progress: bool = False):
    """``(images uint8 (n, s, s, 3), labels, kept indices, failed)`` for archive rows ``indices``.

    ``store_size`` defaults to the first image's longer side capped at ``max_size``: CIFAR
    stays at its native 32 px and is up-sampled on the device, batch by batch."""
    from deephash.data.images import decode_image

    idx = np.arange(len(archive)) if indices is None else np.asarray(indices, np.int64)
    if not len(idx):
        raise DataError("no images to fine-tune on")
    if store_size is None:
        store_size = min(max_size, max(decode_image(archive.abspath(int(idx[0]))).size))
    imgs, failed = load_image_array([archive.abspath(int(i)) for i in idx], store_size, workers=workers,
                                    progress=progress)
    bad = {p for p, _ in failed}
    keep = np.array([str(archive.abspath(int(i))) not in bad for i in idx], bool)
    return imgs[keep], archive.labels[idx[keep]], idx[keep], failed


def _end_to_end_net(trunk, head):
    from torch import nn

    class EndToEndNet(nn.Module):
        """``head(trunk(images))``: what the Trainer trains in the end-to-end regime."""

        is_end_to_end = True

        def __init__(self, trunk, head) -> None:
            super().__init__()
            self.trunk, self.head = trunk, head

        def forward(self, x):
            return self.head(self.trunk(x))

        def __getattr__(self, name):
            # a method's loss may reach parts of its head beyond forward (DPQ's codebooks, a
            # classifier on the codes): the end-to-end net answers for its head
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(super().__getattr__("head"), name)

    return EndToEndNet(trunk, head)


class EndToEnd:
    """What a :class:`DeepHasher` needs to train on images (set as ``method.e2e_`` by :func:`fine_tune`)."""

    def __init__(self, trunk, preprocessing: Preprocessing, device, *, augment: bool = True, pad: int = 4,
                 backbone_lr_mult: float = 1.0, seed: int = 0, eval_batch: int = 512, scale_min: float = 1.0) -> None:
        self.trunk, self.preprocessing, self.device = trunk, preprocessing, device
        self.augment, self.pad, self.backbone_lr_mult = augment, pad, backbone_lr_mult
        self.seed, self.eval_batch, self.scale_min = seed, eval_batch, scale_min
        self.channels_last = getattr(device, "type", str(device)) == "cuda"

    def bank(self, X: np.ndarray, *, train: bool) -> ImageBank:
        return ImageBank(X, self.device, self.preprocessing, train=train and self.augment, pad=self.pad,
                         seed=self.seed, channels_last=self.channels_last, scale_min=self.scale_min if train else 1.0)

    def network(self, head):
        import torch

        net = _end_to_end_net(self.trunk, head)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def descriptors(self, X: np.ndarray, *, max_images: int = 5000) -> np.ndarray:
        """The trunk's descriptors (what the head sees) of up to ``max_images`` evenly spaced images
        of ``X``, eval mode, no augmentation: statistics for a head's input standardisation."""
        pick = np.linspace(0, len(X) - 1, min(len(X), max_images)).round().astype(np.int64)
        return run_network(self.trunk, self.trunk, self.bank(np.asarray(X)[pick], train=False), self.eval_batch)

    def activations(self, method, X: np.ndarray) -> np.ndarray:
        """The method's code activations for uint8 images ``X`` (eval mode, no augmentation)."""
        net = method.net_
        return run_network(lambda x: method.forward_activations(net, x), net, self.bank(X, train=False),
                           self.eval_batch)


def embed_images(method, images: np.ndarray, *, device=None, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """A fine-tuned method's ``(descriptors, code activations)`` for uint8 images, on the device.

    Descriptors are what the head (and DLBHC's fine re-ranking) sees; code bits are
    ``activations >= method.threshold``."""
    import torch

    trunk, head = method.trunk_, method.net_
    dev = torch.device(device) if device is not None else next(trunk.parameters()).device
    trunk.to(dev)
    head.to(dev)
    bank = ImageBank(images, dev, method.preprocessing_, channels_last=dev.type == "cuda")
    desc = run_network(trunk, trunk, bank, batch)
    acts = []
    with torch.no_grad():
        head.eval()
        for s in range(0, len(desc), 4096):
            acts.append(method.forward_activations(head, torch.from_numpy(desc[s : s + 4096]).to(dev)).float().cpu().numpy())
    return desc, np.concatenate(acts)


# ----------------------------------------------------------------------------- the job
@dataclass
class FinetuneConfig:
    """The recipe of one end-to-end run; saved in the checkpoint (``config.finetune``)."""

    method: str = "dlbhc"
    bits: int = 64
    backbone: str = "efficientnet-lite0"
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    val_fraction: float = 0.1
    patience: int = 100
    augment: bool = True
    pad: int = 4
    #: random resized crop (on the device, after crop + flip): minimum area fraction; 1.0 = off
    scale_min: float = 1.0
    device: str = "auto"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(f"epochs must be >= 1 and batch_size >= 2; got {self.epochs}, {self.batch_size}")
        if not 0.0 <= self.backbone_lr_mult <= 10.0:
            raise ConfigError(f"backbone_lr_mult must be in [0, 10]; got {self.backbone_lr_mult}")


def fine_tune(method: str, data, labels: np.ndarray | None = None, *, config: FinetuneConfig | None = None,
              checkpoint_path: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
              progress: bool = False, **overrides: Any):
    """Train backbone + ``method``'s head end to end; returns the fitted hasher.

    ``data``: uint8 images ``(n, h, w, 3)`` with ``labels``, or an :class:`ImageArchive`
    (decoded once with DataLoader workers). ``overrides`` set :class:`FinetuneConfig` fields
    (``bits``, ``epochs``, ``image_size``...). ``checkpoint_path``: resumable training state
    (resumed when it exists); ``out``: where to write the final checkpoint. The hasher gets
    ``trunk_`` (the fine-tuned backbone), ``preprocessing_``, ``history_`` and ``report_``
    (time per epoch, images/s)."""
    import torch

    from deephash.backbones import create_backbone
    from deephash.hashers import create_hasher
    from deephash.hashers.deep import DeepHasher
    from deephash.train.sampling import stratified_holdout
    from deephash.devices import pick_device
    from deephash.utils import seed_everything

    cfg = config or FinetuneConfig(method=method)
    if overrides:
        cfg = FinetuneConfig(**{**asdict(cfg), **overrides})
    cfg.method = method
    failed: list[tuple[str, str]] = []
    if isinstance(data, np.ndarray):
        images, y = data, labels
    else:  # an ImageArchive
        images, y, _, failed = archive_images(data, progress=progress)
    if y is None:
        raise ConfigError("fine-tuning needs labels (every end-to-end method here is supervised)")
    y = np.asarray(y)
    if len(y) != len(images):
        raise ConfigError(f"got {len(images)} images but {len(y)} labels")

    seed_everything(cfg.seed)
    h = create_hasher(method, cfg.bits, seed=cfg.seed, **cfg.params)
    if not isinstance(h, DeepHasher):
        raise ConfigError(f"{method} is not a network-trained method, so it cannot be fine-tuned end to end; "
                          "train it head-only (deephash train)")
    if not h.supervised:
        raise ConfigError(f"{method} is unsupervised: its loss keeps the similarities of fixed backbone features, "
                          "which fine-tuning the backbone would move; train it head-only (deephash train)")
    device = pick_device(cfg.device)
    bb = create_backbone(cfg.backbone, image_size=cfg.image_size)
    trunk = h.build_trunk(bb.torch_module()).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    n_train = len(images)
    if cfg.val_fraction > 0 and len(images) >= 20:  # the Trainer's split sizes (they do not depend on the seed)
        n_train = len(stratified_holdout(y, cfg.val_fraction, np.random.default_rng(0))[0])
    ipe = max(1, math.ceil(n_train / cfg.batch_size))
    source = EndToEnd(trunk, bb.preprocessing, device, augment=cfg.augment, pad=cfg.pad,
                      backbone_lr_mult=cfg.backbone_lr_mult, seed=cfg.seed, scale_min=cfg.scale_min)
    tcfg = h.trainer_config(n_iters=cfg.epochs * ipe, eval_every=ipe, batch_size=cfg.batch_size, lr=cfg.lr,
                            optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule="cosine",
                            warmup_iters=int(cfg.warmup_epochs * ipe), patience=cfg.patience,
                            val_fraction=cfg.val_fraction, device=str(device), log_every=max(1, ipe // 4),
                            checkpoint_path=str(checkpoint_path) if checkpoint_path else None, progress=progress)
    t0 = time.perf_counter()
    h.fit_end_to_end(images, y, source, trunk.out_dim, tcfg)
    wall = time.perf_counter() - t0
    net = h.net_
    h.trunk_, h.net_ = net.trunk, net.head
    # the checkpoint stores float16 weights: round them now so the model evaluated is the one saved
    with torch.no_grad():
        for t in [*h.trunk_.state_dict().values(), *h.net_.state_dict().values()]:
            if torch.is_floating_point(t):
                t.copy_(t.half().float())
    h.trunk_.eval()
    h.net_.eval()
    h.preprocessing_ = bb.preprocessing
    h.finetune_ = {**asdict(cfg), "store_size": int(images.shape[1])}  # encode decodes to this size, as here
    hist = h.history_
    iters = hist["iters"] - hist.get("resumed_from", 0)
    train_s = max(1e-9, hist["seconds"] - hist.get("validation_s", 0.0))
    h.report_ = {
        "method": method, "bits": cfg.bits, "backbone": cfg.backbone, "image_size": cfg.image_size,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "n_train": n_train, "n_val": len(images) - n_train, "iters_per_epoch": ipe, "iters": hist["iters"],
        "epochs_run": hist["iters"] / ipe, "train_seconds": train_s, "validation_seconds": hist.get("validation_s", 0.0),
        "wall_seconds": wall, "seconds_per_epoch": train_s / max(1e-9, iters / ipe),
        "images_per_second": iters * cfg.batch_size / train_s, "best_val_map": hist.get("best_val_map"),
        "val": hist["val"], "early_stopped_at": hist.get("early_stopped_at"), "skipped": failed,
    }
    if out:
        save_finetuned(h, out)
    return h


def save_finetuned(h, path: str | os.PathLike) -> Path:
    """Write a fine-tuned hasher's checkpoint: head, float16 trunk, backbone name, preprocessing, recipe."""
    if getattr(h, "trunk_", None) is None:
        raise ConfigError(f"this {h.name} hasher was not fine-tuned end to end (no trunk_)")
    return h.save(path, backbone=h.finetune_["backbone"], preprocessing=h.preprocessing_.to_dict(), finetune=h.finetune_)
