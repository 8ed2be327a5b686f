"""Image archives, safe decoding and built-in datasets."""
from deephash.data.archive import ImageArchive, open_archive
from deephash.data.datasets import fetch_cifar10, find_cifar10, load_cifar10
from deephash.data.images import decode_image, load_rgb

__all__ = ["ImageArchive", "open_archive", "load_cifar10", "find_cifar10", "fetch_cifar10", "decode_image", "load_rgb"]
