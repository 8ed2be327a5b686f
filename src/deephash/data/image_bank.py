"""Images as a batch source on the training device: :class:`ImageBank` (uint8 images held on the
device, augmented, resized and normalised there in one batched call) and :func:`run_network`
(a network over a whole bank in eval mode).

The end-to-end regime trains on an image bank where the head-only regime trains on a feature
bank; a fine-tuned backbone embeds new images through the same bank, so training and inference
preprocess alike (see :mod:`deephash.train.finetune`, :mod:`deephash.backbones.finetuned`).
"""
from __future__ import annotations

import math

import numpy as np

from deephash.config import Preprocessing
from deephash.errors import ConfigError


class ImageBank:
    """uint8 NHWC images held on ``device``; ``bank[idx]`` -> normalised float NCHW input batch.

    With ``train=True`` each batch is augmented on the device: zero-padded random crop
    (``pad`` pixels, at the stored resolution) and horizontal flip with probability 1/2.
    Then every batch is resized to ``preprocessing.size`` (bilinear) and normalised with the
    backbone's mean/std, as :meth:`Backbone.normalize` does on the CPU."""

    def __init__(self, images: np.ndarray, device, preprocessing: Preprocessing, *, train: bool = False,
                 pad: int = 4, flip: bool = True, seed: int = 0, channels_last: bool = True,
                 scale_min: float = 1.0) -> None:
        import torch

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ConfigError(f"images must be uint8 (n, h, w, 3); got {images.dtype} {images.shape}")
        self.device = torch.device(device)
        self.data = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self.size = int(preprocessing.size)
        self.mean = torch.tensor(preprocessing.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(preprocessing.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.train, self.pad, self.flip = train, int(pad), flip
        self.scale_min = float(scale_min)
        self.channels_last = channels_last
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def _augment(self, x):
        import torch

        n, h, w, _ = x.shape
        p = self.pad
        dev = x.device
        if p > 0:
            x = torch.nn.functional.pad(x, (0, 0, p, p, p, p))  # zero padding of H and W (NHWC)
            oy = torch.randint(0, 2 * p + 1, (n,), device=dev, generator=self.gen)
            ox = torch.randint(0, 2 * p + 1, (n,), device=dev, generator=self.gen)
        else:
            oy = ox = torch.zeros(n, dtype=torch.long, device=dev)
        rows = oy[:, None] + torch.arange(h, device=dev)[None, :]
        ar = torch.arange(w, device=dev)[None, :]
        if self.flip:
            flip = torch.rand(n, device=dev, generator=self.gen) < 0.5
            ar = torch.where(flip[:, None], (w - 1) - ar, ar)
        cols = ox[:, None] + ar
        b = torch.arange(n, device=dev)[:, None, None]
        return x[b, rows[:, :, None], cols[:, None, :]]

    def _resized_crop(self, x):
        """Random resized crop straight to the input size (one ``grid_sample``): a window of
        ``s^2`` of the area, ``s ~ U(sqrt(scale_min), 1)``, aspect jitter 3/4..4/3, random place."""
        import torch

        n, dev = x.shape[0], x.device
        s = torch.sqrt(torch.empty(n, device=dev).uniform_(self.scale_min, 1.0, generator=self.gen))
        ar = torch.exp(torch.empty(n, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3), generator=self.gen))
        sx, sy = (s * ar.sqrt()).clamp(max=1.0), (s / ar.sqrt()).clamp(max=1.0)
        tx = (torch.rand(n, device=dev, generator=self.gen) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, device=dev, generator=self.gen) * 2 - 1) * (1 - sy)
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        grid = torch.nn.functional.affine_grid(theta, (n, 3, self.size, self.size), align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def to_input(self, x):
        """uint8 NHWC on the device -> normalised float32 NCHW at the backbone's input size."""
        import torch

        x = x.permute(0, 3, 1, 2).float()
        if self.train and self.scale_min < 1.0:
            x = self._resized_crop(x)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                                antialias=x.shape[-1] > self.size)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def __getitem__(self, idx):
        import torch

        idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx, dtype=torch.long,
                              device=self.device)
        x = self.data[idx]
        if self.train:
            x = self._augment(x)
        return self.to_input(x)



def run_network(fn, module, bank: ImageBank, batch: int = 512) -> np.ndarray:
    """``fn`` over the whole bank in eval mode with bf16 autocast on CUDA; float32 numpy out."""
    import torch

    was_training = module.training
    module.eval()
    out = []
    with torch.no_grad(), torch.autocast(bank.device.type, dtype=torch.bfloat16, enabled=bank.device.type == "cuda"):
        for s in range(0, len(bank), batch):
            out.append(fn(bank[np.arange(s, min(s + batch, len(bank)))]).float().cpu().numpy())
    module.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
