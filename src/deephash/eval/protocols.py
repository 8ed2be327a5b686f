"""Evaluation protocols as named, versioned objects, and the splits they produce.

Published deep-hashing numbers for one method on CIFAR-10 differ by 0.2 mAP depending on
unstated choices. A :class:`Protocol` states every one of them: which images query, which
train, which form the database, the mAP cutoff, the relevance rule and the tie rule. Its
:meth:`Protocol.split` is deterministic given the labels and the seed, and
:meth:`Split.save` writes the chosen image ids (not positions) so anyone can reproduce it.

``get_protocol(name, **overrides)`` / ``list_protocols()`` read the :data:`PROTOCOLS` registry.
Changing what a registered protocol does means bumping its ``version``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.errors import ConfigError, DataError
from deephash.registry import Registry
from deephash.utils import atomic_write_json, sha1_of

SPLIT_FORMAT = "deephash-split"
SPLIT_FORMAT_VERSION = 1

TIE_RULE = (
    "mAP orders items at equal distance by database position (stable sort, the index's order); "
    "tie-aware mAP, the expected mAP over uniformly random orders inside each tie, is reported beside it"
)

_RELEVANCE_WORDS = {
    "single": "same label (single-label)",
    "multi": "at least one shared label (multi-label, multi-hot labels)",
    "any": "same label for 1-D labels, at least one shared label for multi-hot labels",
}

# how the database is formed, by ``kind``-independent rule names
_DB_RULES = ("rest", "rest+train", "train", "query")


@dataclass(frozen=True)
class Reduction:
    """A demo-sized subsample of a protocol's split (per class for single-label data)."""

    n_query: int
    n_db: int
    n_train: int | None
    seed: int


@dataclass(frozen=True)
class Protocol:
    """Every choice behind a retrieval number, with a name and a version.

    ``kind`` selects the splitting rule ('pool-per-class', 'pool-random', 'source-split',
    'ratio-per-class'); ``params`` holds its numbers; ``database`` says which images form the
    database: 'rest' (neither query nor training), 'rest+train' (everything but the queries),
    'train' (the training images) or 'query' (the queries themselves, leave-one-out).
    """

    name: str
    version: int
    description: str
    kind: str
    topk: int | None
    relevance: str
    database: str
    params: dict[str, Any] = field(default_factory=dict)
    leave_one_out: bool = False
    tie_rule: str = TIE_RULE
    reduction: Reduction | None = None

    def __post_init__(self) -> None:
        if self.kind not in _SPLITTERS:
            raise ConfigError(f"protocol kind must be one of {sorted(_SPLITTERS)}; got {self.kind!r}")
        if self.relevance not in _RELEVANCE_WORDS:
            raise ConfigError(f"relevance must be one of {sorted(_RELEVANCE_WORDS)}; got {self.relevance!r}")
        if self.database not in _DB_RULES:
            raise ConfigError(f"database rule must be one of {list(_DB_RULES)}; got {self.database!r}")
        if self.topk is not None and (not isinstance(self.topk, (int, np.integer)) or self.topk < 1):
            raise ConfigError(f"topk must be a positive int or None (all); got {self.topk!r}")
        if self.leave_one_out != (self.database == "query"):
            raise ConfigError("leave-one-out protocols use the queries as the database (database='query'), and only they")

    # ------------------------------------------------------------------ words

    def describe(self, drawn: dict[str, int] | None = None) -> str:
        """The protocol in words, as reports print it.

        ``drawn`` (the sizes of a split actually drawn: ``query``, ``train``, ``database`` and
        ``total``, the archive's image count) fills the counts in the rules, so a report on another
        archive states its own numbers, not CIFAR-10's; without it the protocol's nominal counts
        (``params['nominal']``) are shown."""
        k = "all" if self.topk is None else f"{self.topk:,}"
        if drawn is not None and self.topk is not None and self.topk >= drawn.get("database", self.topk + 1):
            k += f" (at least this database's {drawn['database']:,} images: mAP@all here)"
        sizes = _Counts(drawn if drawn is not None else self.params.get("nominal", {}))
        lines = [
            f"{self.name} (version {self.version}): {self.description}",
            f"- queries: {self.params.get('query_rule', '').format_map(sizes)}",
            f"- training: {self.params.get('train_rule', '').format_map(sizes)}",
            f"- database: {self.params.get('database_rule', '').format_map(sizes)}",
            f"- mAP@{k}; AP divides by the relevant items found in the top K; a query with none scores 0 and counts",
            f"- relevance: {_RELEVANCE_WORDS[self.relevance]}",
            f"- ties: {self.tie_rule}",
        ]
        if drawn is not None:
            lines.append(f"- drawn from this archive: {drawn.get('query', 0):,} queries, {drawn.get('train', 0):,} "
                         f"training images, {drawn.get('database', 0):,} database images"
                         + (f", of {drawn['total']:,} images" if "total" in drawn else ""))
        if self.leave_one_out:
            lines.append("- leave-one-out: each query is removed from its own database")
        if self.reduction is not None:
            r = self.reduction
            lines.append(
                f"- REDUCED for a quick demo: at most {r.n_query:,} queries, {r.n_db:,} database images"
                + (f", {r.n_train:,} training images" if r.n_train is not None else "")
                + f", subsampled per class (seed {r.seed}) from the full split; a cutoff above the reduced database "
                "size means 'all'; not comparable with published numbers"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["words"] = self.describe()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Protocol":
        d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        if d.get("reduction") is not None:
            d["reduction"] = Reduction(**d["reduction"])
        return cls(**d)

    # ------------------------------------------------------------------ variants

    def reduced(self, n_query: int, n_db: int, seed: int = 0, *, n_train: int | None = None) -> "Protocol":
        """The same protocol on a per-class subsample of its split, for demos; reports say so.

        Databases that contain the training images keep the (reduced) training set inside the
        reduced database; for leave-one-out the queries *are* the database, so ``n_db`` sizes both.
        """
        for nm, v in (("n_query", n_query), ("n_db", n_db)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{nm} must be a positive int; got {v!r}")
        if n_train is not None and (not isinstance(n_train, (int, np.integer)) or n_train < 1):
            raise ConfigError(f"n_train must be a positive int or None (keep all); got {n_train!r}")
        if self.database == "rest+train" and n_train is not None and n_train > n_db:
            raise ConfigError(
                f"{self.name}'s database contains the training images, so n_db ({n_db}) must be >= n_train ({n_train})"
            )
        name = self.name if self.name.endswith("-reduced") else f"{self.name}-reduced"
        return dataclasses.replace(self, name=name, reduction=Reduction(int(n_query), int(n_db), n_train, int(seed)))

    # ------------------------------------------------------------------ splitting

    def split_archive(self, archive: Any, seed: int = 0) -> "Split":
        """:meth:`split` of an :class:`~deephash.data.ImageArchive`: its labels, and its split folders
        as source splits when they are exactly 'train' / 'test' (the protocols that follow the
        source split say so when an archive has none)."""
        names = archive.splits if set(archive.splits) <= {"train", "test"} and any(archive.splits) else None
        return self.split(archive.labels, names, seed)

    def split(self, labels: np.ndarray, split_names: Sequence[str] | None = None, seed: int = 0) -> "Split":
        """Query / training / database positions for a labels array (1-D int or 2-D multi-hot).

        ``split_names[i]`` is image i's source split ('train' or 'test'); only protocols that
        follow the source split read it. Deterministic in ``(labels, split_names, seed)``.
        """
        labels = _check_labels(labels, self.relevance)
        names = None
        if split_names is not None:
            names = np.asarray(list(split_names))
            if names.shape != (len(labels),):
                raise ConfigError(f"split_names has {names.shape[0]} entries for {len(labels)} labels")
            bad = sorted(set(names.tolist()) - {"train", "test"})
            if bad:
                raise ConfigError(f"split_names must be 'train' or 'test'; got {bad[:5]}")
        rng = np.random.default_rng(seed)
        q, t, d = _SPLITTERS[self.kind](self, labels, names, rng)
        if self.reduction is not None:
            q, t, d = _reduce(self, labels, q, t, d)
        return Split(
            protocol=self.name,
            version=self.version,
            seed=int(seed),
            query_idx=np.sort(q).astype(np.int64),
            train_idx=np.sort(t).astype(np.int64),
            db_idx=np.sort(d).astype(np.int64),
            leave_one_out=self.leave_one_out,
            protocol_info=self.to_dict(),
        )


@dataclass
class Split:
    """Positions (into the labels array) of the queries, training images and database."""

    protocol: str
    version: int
    seed: int
    query_idx: np.ndarray
    train_idx: np.ndarray
    db_idx: np.ndarray
    leave_one_out: bool = False
    protocol_info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"query": len(self.query_idx), "train": len(self.train_idx), "database": len(self.db_idx)}

    def save(self, path: str | Path, image_ids: Sequence[str]) -> Path:
        """Write the split as image ids (JSON, atomically) with the protocol, its version and the seed."""
        ids = [str(i) for i in image_ids]
        used = np.concatenate([self.query_idx, self.train_idx, self.db_idx])
        if len(used) and int(used.max()) >= len(ids):
            raise ConfigError(f"the split refers to image {int(used.max())} but only {len(ids)} image ids were given")
        if len(set(ids)) != len(ids):
            raise ConfigError("image ids must be unique to identify a split")
        doc = {
            "format": SPLIT_FORMAT,
            "format_version": SPLIT_FORMAT_VERSION,
            "protocol": self.protocol,
            "protocol_version": self.version,
            "seed": self.seed,
            "leave_one_out": self.leave_one_out,
            "n_images": len(ids),
            "image_ids_sha1": sha1_of(ids),
            "sizes": self.sizes(),
            "protocol_info": self.protocol_info,
            "query": [ids[i] for i in self.query_idx],
            "train": [ids[i] for i in self.train_idx],
            "database": [ids[i] for i in self.db_idx],
        }
        atomic_write_json(path, doc)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, image_ids: Sequence[str]) -> "Split":
        """Read a split file and map its ids back to positions in ``image_ids``."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DataError(f"split file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"split file {path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
            raise DataError(f"{path} is not a deephash split file (no format tag {SPLIT_FORMAT!r})")
        if doc.get("format_version", 0) > SPLIT_FORMAT_VERSION:
            raise DataError(
                f"split file {path} has format version {doc.get('format_version')}; this deephash reads up to {SPLIT_FORMAT_VERSION}"
            )
        pos = {str(i): k for k, i in enumerate(image_ids)}

        def to_idx(key: str) -> np.ndarray:
            missing = [i for i in doc[key] if i not in pos]
            if missing:
                raise DataError(
                    f"{len(missing)} {key} image ids of split file {path} are not in this dataset, e.g. {missing[:3]}"
                )
            return np.array([pos[i] for i in doc[key]], dtype=np.int64)

        return cls(
            protocol=doc["protocol"],
            version=int(doc["protocol_version"]),
            seed=int(doc["seed"]),
            query_idx=to_idx("query"),
            train_idx=to_idx("train"),
            db_idx=to_idx("database"),
            leave_one_out=bool(doc.get("leave_one_out", False)),
            protocol_info=doc.get("protocol_info", {}),
        )


# ------------------------------------------------------------------------------ helpers


class _Counts(dict):
    """Sizes for a rule's ``{query:,}``-style fields; a size not known shows as 'the' number."""

    def __missing__(self, key: str) -> "_Unknown":
        return _Unknown()


class _Unknown:
    def __format__(self, spec: str) -> str:
        return "N"


def _check_labels(labels: Any, relevance: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2) or len(labels) == 0:
        raise ConfigError(f"labels must be a non-empty 1-D int array or a 2-D multi-hot array; got shape {labels.shape}")
    if labels.ndim == 1 and not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"1-D labels must be integers (class ids); got dtype {labels.dtype}")
    if relevance == "single" and labels.ndim != 1:
        raise ConfigError(f"this protocol is single-label: labels must be 1-D class ids; got shape {labels.shape}")
    if relevance == "multi" and labels.ndim != 2:
        raise ConfigError(f"this protocol is multi-label: labels must be 2-D multi-hot; got shape {labels.shape}")
    return labels.astype(bool) if labels.ndim == 2 else labels


def _class_members(labels: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(class, positions) in class order; for multi-hot labels, every image holding that label."""
    if labels.ndim == 1:
        return [(c, np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return [(c, np.flatnonzero(labels[:, c])) for c in range(labels.shape[1])]


def _per_class_draw(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator,
                    what: str, protocol: str) -> np.ndarray:
    """``per_class`` images of every class from ``pool`` (bool mask), without replacement across classes."""
    pool = pool.copy()
    chosen: list[np.ndarray] = []
    for c, members in _class_members(labels):
        cand = members[pool[members]]
        if len(cand) < per_class:
            raise ConfigError(
                f"class {c} has {len(cand)} images left to draw {what} from; {protocol} takes {per_class} per class"
            )
        pick = rng.permutation(cand)[:per_class]
        pool[pick] = False
        chosen.append(pick)
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def _database(p: Protocol, n: int, q: np.ndarray, t: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[q] = False
    if p.database == "rest":
        mask[t] = False
    elif p.database == "train":
        return t
    elif p.database == "query":
        return q
    return np.flatnonzero(mask)


def _split_pool_per_class(p: Protocol, labels, names, rng):
    """Per class, draw queries then training images from the *whole* pool (train and test together)."""
    pool = np.ones(len(labels), dtype=bool)
    q = _per_class_draw(labels, pool, p.params["query_per_class"], rng, "queries", p.name)
    pool[q] = False
    t = _per_class_draw(labels, pool, p.params["train_per_class"], rng, "training images", p.name)
    return q, t, _database(p, len(labels), q, t)


def _split_pool_random(p: Protocol, labels, names, rng):
    """Queries and training images drawn at random (not per class) from the whole pool."""
    nq, nt = p.params["n_query"], p.params["n_train"]
    if nq + nt > len(labels):
        raise ConfigError(f"{p.name} takes {nq} queries and {nt} training images; only {len(labels)} images")
    perm = rng.permutation(len(labels))
    q, t = perm[:nq], perm[nq : nq + nt]
    return q, t, _database(p, len(labels), q, t)


def _split_source(p: Protocol, labels, names, rng):
    """Follow the dataset's own train/test split: test images query, training images train."""
    if names is None:
        raise ConfigError(f"{p.name} follows the dataset's train/test split: pass split_names ('train'/'test' per image)")
    q = np.flatnonzero(names == p.params.get("query_source", "test"))
    t = np.flatnonzero(names == p.params.get("train_source", "train"))
    if len(q) == 0 or len(t) == 0:
        raise ConfigError(f"{p.name} needs both 'train' and 'test' images; got {len(t)} train and {len(q)} test")
    return q, t, _database(p, len(labels), q, t)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _split_ratio_per_class(p: Protocol, labels, names, rng):
    """Per class, a seeded shuffle cut by ratios (rounded half up): queries first, then training.

    For leave-one-out with ``split_names`` given, the dataset's own split is used instead:
    'train' images train, 'test' images query each other.
    """
    if p.leave_one_out and names is not None:
        return _split_source(p, labels, names, rng)
    qr, tr = float(p.params["query_ratio"]), float(p.params["train_ratio"])
    taken = np.zeros(len(labels), dtype=bool)
    qs, ts = [], []
    for _, members in _class_members(labels):
        cand = rng.permutation(members[~taken[members]])
        nq, nt = _round_half_up(qr * len(cand)), _round_half_up(tr * len(cand))
        nt = min(nt, len(cand) - nq)
        qs.append(cand[:nq])
        ts.append(cand[nq : nq + nt])
        taken[cand[: nq + nt]] = True
    q = np.concatenate(qs) if qs else np.zeros(0, np.int64)
    t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    return q, t, _database(p, len(labels), q, t)


_SPLITTERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
    "pool-per-class": _split_pool_per_class,
    "pool-random": _split_pool_random,
    "source-split": _split_source,
    "ratio-per-class": _split_ratio_per_class,
}


def _subsample(labels: np.ndarray, idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``idx``, stratified by class for 1-D labels (largest remainder), uniform for multi-hot."""
    idx = np.asarray(idx)
    if n >= len(idx):
        return idx
    if labels.ndim != 1:
        return rng.choice(idx, size=n, replace=False)
    classes, counts = np.unique(labels[idx], return_counts=True)
    quota = counts * n / len(idx)
    take = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[j] += 1
    return np.concatenate([rng.permutation(idx[labels[idx] == c])[:k] for c, k in zip(classes, take)])


def _reduce(p: Protocol, labels: np.ndarray, q, t, d):
    r = p.reduction
    if r is None:
        return q, t, d
    rng = np.random.default_rng(r.seed)
    if p.database == "query":  # leave-one-out: one set plays both parts
        q = d = _subsample(labels, q, r.n_db, rng)
        if r.n_train is not None:
            t = _subsample(labels, t, r.n_train, rng)
        return q, t, d
    q = _subsample(labels, q, r.n_query, rng)
    if p.database == "train":
        t = d = _subsample(labels, t, r.n_db, rng)
    elif p.database == "rest+train":
        if r.n_train is not None:
            t = _subsample(labels, t, r.n_train, rng)
        rest = np.setdiff1d(d, t)
        d = np.concatenate([t, _subsample(labels, rest, max(0, r.n_db - len(t)), rng)])
    else:
        if r.n_train is not None:
            t = _subsample(labels, t, r.n_train, rng)
        d = _subsample(labels, d, r.n_db, rng)
    return q, t, d


# ------------------------------------------------------------------------------ the registry

PROTOCOLS: Registry[Protocol] = Registry("protocol")


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """The registered protocol ``name``; keyword overrides go to its factory (e.g. ``query_ratio``)."""
    import inspect

    factory = PROTOCOLS.get(name)
    allowed = list(inspect.signature(factory).parameters)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(
            f"protocol {name!r} takes {', '.join(allowed) if allowed else 'no parameters'}; got {', '.join(unknown)}"
        )
    return factory(**overrides)


def list_protocols(pattern: str = "*") -> list[str]:
    """Registered protocol names, sorted (what ``deephash protocols`` prints, one a line)."""
    return PROTOCOLS.names(pattern)


@PROTOCOLS.register("cifar10-54k")
def _cifar10_54k() -> Protocol:
    return Protocol(
        name="cifar10-54k",
        version=1,
        description="CIFAR-10, DPSH/HashNet setting: training images are not in the database",
        kind="pool-per-class",
        topk=54000,
        relevance="single",
        database="rest",
        params={
            "query_per_class": 100,
            "train_per_class": 500,
            "nominal": {"query": 1000, "train": 5000, "database": 54000, "total": 60000},
            "query_rule": "100 per class ({query:,}), drawn at random from the pooled {total:,} train+test images "
            "(the source split is ignored, as in DPSH and HashNet)",
            "train_rule": "500 per class ({train:,}) from the same pool, disjoint from the queries",
            "database_rule": "the remaining {database:,} images; training images are NOT in the database",
        },
    )


@PROTOCOLS.register("cifar10-59k")
def _cifar10_59k() -> Protocol:
    return Protocol(
        name="cifar10-59k",
        version=1,
        description="CIFAR-10 with the training images in the database",
        kind="pool-per-class",
        topk=None,
        relevance="single",
        database="rest+train",
        params={
            "query_per_class": 100,
            "train_per_class": 500,
            "nominal": {"query": 1000, "train": 5000, "database": 59000, "total": 60000},
            "query_rule": "100 per class ({query:,}), drawn at random from the pooled {total:,} train+test images",
            "train_rule": "500 per class ({train:,}) from the same pool, disjoint from the queries",
            "database_rule": "all {database:,} non-query images, the {train:,} training images included",
        },
    )


@PROTOCOLS.register("cifar10-50k")
def _cifar10_50k() -> Protocol:
    return Protocol(
        name="cifar10-50k",
        version=1,
        description="CIFAR-10, DLBHC setting: the official test set queries the official training set",
        kind="source-split",
        topk=1000,
        relevance="single",
        database="train",
        params={
            "query_source": "test",
            "train_source": "train",
            "nominal": {"query": 10000, "train": 50000, "database": 50000, "total": 60000},
            "query_rule": "the {query:,} images of the source split 'test' (CIFAR-10's official test set)",
            "train_rule": "the {train:,} images of the source split 'train' (CIFAR-10's official training set)",
            "database_rule": "the same {database:,} training images",
        },
    )


@PROTOCOLS.register("nuswide-21")
def _nuswide_21(topk: int | None = 5000) -> Protocol:
    return Protocol(
        name="nuswide-21",
        version=1,
        description="NUS-WIDE restricted to the 21 most frequent concepts (multi-label)",
        kind="pool-per-class",
        topk=topk,
        relevance="multi",
        database="rest",
        params={
            "query_per_class": 100,
            "train_per_class": 500,
            "nominal": {"query": 2100, "train": 10500},
            "query_rule": "100 per concept ({query:,}): for each concept in turn, images holding it not drawn yet",
            "train_rule": "500 per concept ({train:,}), drawn the same way after the queries",
            "database_rule": "all remaining images; training images are NOT in the database",
        },
    )


@PROTOCOLS.register("coco-hashnet")
def _coco_hashnet(topk: int | None = 5000) -> Protocol:
    return Protocol(
        name="coco-hashnet",
        version=1,
        description="MS-COCO, HashNet setting (multi-label)",
        kind="pool-random",
        topk=topk,
        relevance="multi",
        database="rest+train",
        params={
            "n_query": 5000,
            "n_train": 10000,
            "nominal": {"query": 5000, "train": 10000},
            "query_rule": "{query:,} images drawn at random from the whole pool",
            "train_rule": "{train:,} images drawn at random from the rest",
            "database_rule": "every non-query image, the training images included",
        },
    )


@PROTOCOLS.register("source-split")
def _source_split(topk: int | None = None, database: str = "train") -> Protocol:
    if database not in ("train", "rest+train"):
        raise ConfigError(f"source-split database must be 'train' or 'rest+train'; got {database!r}")
    return Protocol(
        name="source-split",
        version=1,
        description="the archive's own train/test split (split folders, or the label file's split column)",
        kind="source-split",
        topk=topk,
        relevance="any",
        database=database,
        params={
            "query_source": "test",
            "train_source": "train",
            "query_rule": "the {query:,} images of the split 'test'",
            "train_rule": "the {train:,} images of the split 'train'",
            "database_rule": "the same {database:,} training images" if database == "train"
            else "all {database:,} non-query images, the training images included",
        },
    )


def _check_ratios(query_ratio: float, train_ratio: float) -> None:
    if not (0 < query_ratio < 1 and 0 <= train_ratio < 1 and query_ratio + train_ratio <= 1):
        raise ConfigError(
            "query_ratio must be in (0, 1), train_ratio in [0, 1) and their sum at most 1; "
            f"got query_ratio={query_ratio}, train_ratio={train_ratio}"
        )


@PROTOCOLS.register("folder-split")
def _folder_split(
    query_ratio: float = 0.1, train_ratio: float = 0.5, topk: int | None = None, database: str = "rest+train"
) -> Protocol:
    _check_ratios(query_ratio, train_ratio)
    if database not in ("rest", "rest+train"):
        raise ConfigError(f"folder-split database must be 'rest' or 'rest+train'; got {database!r}")
    return Protocol(
        name="folder-split",
        version=1,
        description="a user's own labelled archive, split per class by seeded ratios",
        kind="ratio-per-class",
        topk=topk,
        relevance="any",
        database=database,
        params={
            "query_ratio": query_ratio,
            "train_ratio": train_ratio,
            "query_rule": f"{query_ratio:.0%} of each class (rounded half up), seeded shuffle",
            "train_rule": f"{train_ratio:.0%} of each class (rounded half up), drawn from its non-query images",
            "database_rule": "every non-query image, the training images included"
            if database == "rest+train"
            else "the images that are neither queries nor training images",
        },
    )


@PROTOCOLS.register("leave-one-out")
def _leave_one_out(train_ratio: float = 0.6, topk: int | None = 20) -> Protocol:
    if not 0 <= train_ratio < 1:
        raise ConfigError(f"train_ratio must be in [0, 1); got {train_ratio}")
    return Protocol(
        name="leave-one-out",
        version=1,
        description="MHCLN code's setting: every held-out image queries all other held-out images",
        kind="ratio-per-class",
        topk=topk,
        relevance="any",
        database="query",
        leave_one_out=True,
        params={
            "query_ratio": round(1 - train_ratio, 12),
            "train_ratio": train_ratio,
            "query_rule": f"the held-out {1 - train_ratio:.0%} of each class (or the 'test' images when the "
            "dataset has a train/test split); each one queries all the others",
            "train_rule": f"{train_ratio:.0%} of each class, seeded shuffle (or the 'train' images)",
            "database_rule": "the held-out images themselves, each query's own image removed",
        },
    )
