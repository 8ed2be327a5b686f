"""Built-in datasets. CIFAR-10 comes from a local copy: never downloaded in tests or by default."""
from __future__ import annotations

import os
from pathlib import Path

from deephash.data.archive import ImageArchive, open_archive
from deephash.errors import DataError

CIFAR10_ENV = "DEEPHASH_CIFAR10"
CIFAR10_FILE = "cifar10-jpg.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve()
    repo = here.parents[3]  # src/deephash/data/datasets.py -> repository root
    cands = []
    for base in (Path.cwd(), repo):
        cands += [base / "shared" / "data" / CIFAR10_FILE, base.parent / "shared" / "data" / CIFAR10_FILE]
    return cands


def find_cifar10(path: str | os.PathLike | None = None) -> Path:
    """Where CIFAR-10 is: ``path``, else ``$DEEPHASH_CIFAR10``, else ``shared/data/cifar10-jpg.tar.gz`` nearby."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"CIFAR-10 not found at {str(p)!r} (expected the image-folder folder or its .tar.gz)")
        return p
    env = os.environ.get(CIFAR10_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise DataError(f"${CIFAR10_ENV} points to {env!r}, which does not exist")
        return p
    for c in _candidates():
        if c.exists():
            return c
    raise DataError(
        "CIFAR-10 not found: pass --data PATH, set $DEEPHASH_CIFAR10 to the image-folder archive "
        f"(cifar10/{{train,test}}/<class>/*.jpg or its .tar.gz), or run `deephash fetch cifar10` with internet access. "
        f"Looked in: {', '.join(str(c) for c in _candidates())}"
    )


def load_cifar10(path: str | os.PathLike | None = None) -> ImageArchive:
    """CIFAR-10 as an :class:`ImageArchive` with ``splits`` 'train' (50,000) and 'test' (10,000)."""
    return open_archive(find_cifar10(path))


FASHION_MNIST_ENV = "DEEPHASH_FASHION_MNIST"
#: where Debian's ``dataset-fashion-mnist`` package puts the four IDX files
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def find_fashion_mnist(path: str | os.PathLike | None = None) -> Path:
    """Where Fashion-MNIST's IDX files are: ``path``, else ``$DEEPHASH_FASHION_MNIST``, else Debian's folder."""
    from deephash.data.idx import is_idx_folder

    cands = [Path(path).expanduser()] if path is not None else (
        [Path(os.environ[FASHION_MNIST_ENV]).expanduser()] if os.environ.get(FASHION_MNIST_ENV)
        else [Path(d) for d in FASHION_MNIST_DIRS])
    for c in cands:
        if c.is_dir() and is_idx_folder(c):
            return c
    raise DataError(f"Fashion-MNIST not found: looked for its IDX files (train-images-idx3-ubyte.gz, ...) in "
                    f"{', '.join(str(c) for c in cands)}; install Debian's dataset-fashion-mnist package "
                    f"(apt-get install dataset-fashion-mnist) or set ${FASHION_MNIST_ENV} to the folder")


def load_fashion_mnist(path: str | os.PathLike | None = None) -> ImageArchive:
    """Fashion-MNIST as an :class:`ImageArchive`: 'train' (60,000) and 'test' (10,000) 28x28 grey images
    in 10 classes, read from its IDX files (written once as PNGs into the cache)."""
    from deephash.data.idx import idx_image_folder

    return open_archive(idx_image_folder(find_fashion_mnist(path), FASHION_MNIST_CLASSES))


#: built-in datasets by name (``--dataset NAME``); anything else is the path of an archive
DATASETS = {"cifar10": load_cifar10, "fashion-mnist": load_fashion_mnist}


def load_dataset(name_or_path: str | os.PathLike, **kw) -> ImageArchive:
    """A built-in dataset by name (:data:`DATASETS`), else the archive at that path (:func:`open_archive`)."""
    loader = DATASETS.get(str(name_or_path))
    return loader() if loader is not None else open_archive(name_or_path, **kw)


def fetch_cifar10(dest: str | os.PathLike) -> Path:
    """Download the official CIFAR-10 release and write it as an image folder of PNGs (needs internet)."""
    import pickle
    import tarfile
    import urllib.request

    import numpy as np
    from PIL import Image

    from deephash.utils import atomic_path

    dest = Path(dest).expanduser()
    tgz = dest.parent / "cifar-10-python.tar.gz"
    if not tgz.exists():
        try:
            with atomic_path(tgz) as tmp:
                urllib.request.urlretrieve(CIFAR10_URL, tmp)
        except OSError as e:
            raise DataError(f"could not download {CIFAR10_URL} ({e}); without internet use the local archive") from None
    with tarfile.open(tgz) as tf:
        members = {Path(m.name).name: m for m in tf.getmembers() if m.isfile()}
        names = pickle.loads(tf.extractfile(members["batches.meta"]).read(), encoding="latin1")["label_names"]
        for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            count = {n: 0 for n in names}
            for f in files:
                d = pickle.loads(tf.extractfile(members[f]).read(), encoding="latin1")
                imgs = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                for img, lab in zip(imgs, d["labels"]):
                    c = names[lab]
                    out = dest / split / c / f"{count[c]:04d}.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(out)
                    count[c] += 1
    return dest
