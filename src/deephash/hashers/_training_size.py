"""How many training images a method needs for a code length: one rule per method family, here only.

``fit`` calls :func:`warn_if_small` (through ``Hasher._check_X(X, fitting=True)``), which warns
with :class:`SmallTrainingSetWarning` (``warnings.warn``; the CLI prints it as one line on
stderr) when the training set is below its family's minimum. Training still goes ahead: a few
images can be all a user has, but the codes are then worth less than the method promises.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable


class SmallTrainingSetWarning(UserWarning):
    """The training set is too small for the method and the code length."""


@dataclass(frozen=True)
class SizeRule:
    """``minimum(n_bits)`` training images, and why (said in the warning)."""

    minimum: Callable[[int], int]
    why: str


#: one rule per family of methods
RULES: dict[str, SizeRule] = {
    "data-independent": SizeRule(lambda b: 0, "its projections do not depend on the data"),
    "pca": SizeRule(lambda b: 4 * b, "its bits come from principal directions: n images span at most n - 1 of them, "
                                     "and below about 4 images per bit the trailing directions are noise"),
    "quantisation": SizeRule(lambda b: 39 * 256, "it runs k-means with 256 centroids per sub-space, and k-means needs "
                                                 "about 39 images per centroid (FAISS's own minimum)"),
    "anchors": SizeRule(lambda b: 4 * b, "its bits are regressed from RBF anchor features; below about 4 images per "
                                         "bit the regression is under-determined"),
    "learned-head": SizeRule(lambda b: 10 * b, "it trains a neural head; below about 10 images per bit the head "
                                               "memorises its training images"),
}

#: the family of each method whose rule is not the learned head's (every torch-trained method)
FAMILY_OF: dict[str, str] = {"lsh": "data-independent", "itq": "pca", "sh": "pca", "pq": "quantisation",
                             "dpq": "quantisation", "sdh": "anchors"}


def size_family(method: str) -> str:
    """The size-rule family of a registered method name (``learned-head`` unless listed in FAMILY_OF)."""
    return FAMILY_OF.get(method, "learned-head")


def minimum_training_images(method: str, n_bits: int) -> int:
    """The fewest training images ``method`` should be fitted on at ``n_bits`` bits."""
    return RULES[size_family(method)].minimum(n_bits)


def small_training_set_message(method: str, n_bits: int, n_images: int) -> str | None:
    """The warning's text when ``n_images`` is below the method's minimum; None when it is enough."""
    need = minimum_training_images(method, n_bits)
    if n_images >= need:
        return None
    return (f"{method} at {n_bits} bits is being trained on {n_images} images; it needs at least {need} "
            f"because {RULES[size_family(method)].why}: expect poor codes (use fewer bits or more images)")


def warn_if_small(method: str, n_bits: int, n_images: int, stacklevel: int = 4) -> None:
    """``warnings.warn`` a :class:`SmallTrainingSetWarning` when the training set is too small."""
    msg = small_training_set_message(method, n_bits, n_images)
    if msg:
        warnings.warn(msg, SmallTrainingSetWarning, stacklevel=stacklevel)
