"""Image archives, safe decoding and built-in datasets."""
from deephash.data.archive import ImageArchive, open_archive
from deephash.data.datasets import (fetch_cifar10, find_cifar10, find_fashion_mnist, load_cifar10, load_dataset,
                                    load_fashion_mnist)
from deephash.data.images import decode_image, load_rgb

__all__ = ["ImageArchive", "open_archive", "load_cifar10", "find_cifar10", "fetch_cifar10", "find_fashion_mnist", "load_fashion_mnist", "load_dataset", "decode_image", "load_rgb"]
