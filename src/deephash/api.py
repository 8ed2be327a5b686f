"""The jobs API: every job the CLI runs, as a typed function the CLI, the service, the benchmarks and
user code call alike.

``train`` · ``encode`` · ``build_index`` · ``update_index`` · ``search`` · ``evaluate`` · ``demo``

Each takes plain arguments or a config dataclass and returns a dataclass; the CLI only parses
arguments and prints what these return. Searching goes through :mod:`deephash.query` (one query
path); encoding images through :mod:`deephash.encoding` (one streaming encoder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash import __version__
from deephash.errors import ConfigError, DataError
from deephash.index.hash_index import UPLOAD_PREFIX

__all__ = ["TrainConfig", "TrainResult", "train", "EncodeResult", "encode", "IndexBuild", "build_index",
           "IndexUpdate", "update_index", "SearchAnswer", "SearchResults", "search", "open_for_search", "collect_images",
           "evaluate", "demo", "UPLOAD_PREFIX"]

Skipped = list[tuple[str, str]]


# ----------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    """``deephash train``: a method trained head-only on an archive's cached backbone features."""

    archive: str
    out: str
    method: str = "mhcln"
    bits: int = 64
    split: str | None = None
    labels: str | None = None
    backbone: str = "efficientnet-lite0"
    image_size: int = 128
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    progress: bool = True
    n_iters: int | None = None  # deep methods: training iterations (default: the method's, stopped early)
    epochs: float | None = None  # deep methods: passes over the training images, instead of n_iters
    int8: bool = False  # run the backbone as int8, calibrated on the archive (deephash.encoding.int8)


@dataclass
class TrainResult:
    checkpoint: Path
    method: str
    bits: int
    n_images: int
    skipped: Skipped
    history: dict[str, Any] | None = None  # deep methods: iterations run, early stop
    ignored: list[str] = field(default_factory=list)  # files of the archive that are no images (by suffix)


def training_length(hasher: Any, n_train: int, n_iters: int | None, epochs: float | None) -> int | None:
    """``n_iters`` / ``epochs`` as the Trainer's iteration count (None: the method's default).

    An epoch is ``n_train / batch_size`` iterations (the method's batch size); only methods the
    Trainer trains (or that count their own ``n_iters``) take a length."""
    import math

    if n_iters is None and epochs is None:
        return None
    if not hasattr(hasher, "n_iters"):
        raise ConfigError(f"{hasher.name} is not trained by iterations, so --iters/--epochs do not apply to it")
    if n_iters is not None:
        return int(n_iters)
    if hasattr(hasher, "trainer_config"):
        batch = hasher.trainer_config().batch_size
    else:
        batch = int(getattr(hasher, "batch_size", 1) or 1)
    return max(1, math.ceil(epochs * n_train / batch))


def train(cfg: TrainConfig) -> TrainResult:
    """Extract (cached) features of the archive, fit the hasher, save the checkpoint."""
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import DeepHasher, create_hasher
    from deephash.hashers.base import require_labels

    from deephash.utils import check_writable

    if cfg.n_iters is not None and cfg.epochs is not None:
        raise ConfigError("give n_iters (--iters) or epochs (--epochs), not both")
    check_writable(cfg.out)  # before the features and the training, not after
    a = open_archive(cfg.archive, split=cfg.split, labels_file=cfg.labels)
    h = create_hasher(cfg.method, cfg.bits, seed=cfg.seed, **cfg.params)
    require_labels(h, a.labelled)  # before any feature is extracted
    bb = create_backbone(cfg.backbone, image_size=cfg.image_size)
    if cfg.int8:
        bb = _int8_for(bb, a)
    fs = extract_features(a, bb, progress=cfg.progress)
    length = training_length(h, len(fs), cfg.n_iters, cfg.epochs)
    if length is not None:
        h.n_iters = length
    y = a.labels[fs.index] if h.supervised else None
    fit_kw = {"progress": cfg.progress} if isinstance(h, DeepHasher) else {}
    h.fit(fs.features, y, **fit_kw) if h.supervised else h.fit(fs.features, **fit_kw)
    ck = h.save(cfg.out, backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
    return TrainResult(Path(ck), cfg.method, cfg.bits, len(fs), a.skipped + fs.failed, getattr(h, "history_", None),
                       a.ignored)


def _int8_for(backbone, archive):
    """``backbone`` as int8, calibrated on images spread over ``archive`` (an ImageArchive or a list of files)."""
    from deephash.encoding.int8 import int8_backbone

    files = [archive.abspath(i) for i in range(len(archive))] if hasattr(archive, "abspath") else list(archive)
    return int8_backbone(backbone, files)


# ----------------------------------------------------------------------------- encode
def collect_images(inputs: Sequence[str | os.PathLike], skipped: Skipped | None = None) -> list[Path]:
    """Files as given and every image file below the given folders (sorted); a missing one raises.

    Below a folder, files without an image suffix are ignored (not images); a folder or a pipe named
    like an image (``x.jpg/``) is appended to ``skipped`` with the reason."""
    from deephash.data.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES):
                if f.is_file():
                    files.append(f)
                elif skipped is not None:
                    skipped.append((str(f), "a folder named like an image file: skipped" if f.is_dir()
                                    else "not a regular file (a pipe, socket or device): skipped"))
        elif p.exists():
            files.append(p)  # named by the user: decoding says what it is when it is no image
        else:
            raise DataError(f"{s}: no such file or folder")
    return files


@dataclass
class EncodeResult:
    files: list[Path]  # one per row of codes
    codes: np.ndarray  # uint8 (n, K/8)
    skipped: Skipped
    out: Path | None = None  # the .npy written (with ``out``)
    files_out: Path | None = None  # the list of files beside it, row by row


def files_list_path(out: str | os.PathLike) -> Path:
    """Where the file of each row of ``codes.npy`` is listed: ``codes.files.json`` beside it."""
    out = Path(out)
    return out.with_name((out.name[:-4] if out.name.endswith(".npy") else out.name) + ".files.json")


def encode(checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike], *, batch_size: int = 64,
           out: str | os.PathLike | None = None, int8: bool = False) -> EncodeResult:
    """Hash image files (or every image below folders) with a checkpoint alone, in batches. With ``out``,
    write the codes as ``.npy`` and, beside it (:func:`files_list_path`), the file each row belongs to
    (JSON; names that are not UTF-8 are kept losslessly as ``\\udcXX`` escapes) and the files skipped. ``int8``: the backbone quantised, calibrated on these images."""
    from deephash.model import HashModel
    from deephash.utils import atomic_path, atomic_write_json, check_writable

    if out is not None:
        check_writable(out)
        check_writable(files_list_path(out))
    model = HashModel.load(checkpoint)
    skipped: Skipped = []
    files = collect_images(images, skipped)
    if int8 and files:
        model.backbone = _int8_for(model.backbone, files)
    good: list[Path] = []
    codes: list[np.ndarray] = []
    for pos, c, _, t in model.encode_batches(files, batch_size=batch_size):
        if c is None:
            skipped.append((str(files[pos[0]]), t))
            continue
        good += [files[i] for i in pos]
        codes.append(c)
    if not codes:
        raise DataError("no image could be encoded" + (f" ({skipped[0][1]})" if skipped else ""))
    res = EncodeResult(good, np.concatenate(codes), skipped)
    if out is not None:
        res.out, res.files_out = Path(out), files_list_path(out)
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, res.codes)
        atomic_write_json(res.files_out, {"codes": res.out.name, "bits": int(model.hasher.n_bits), "rows": len(good),
                                          "files": [str(f) for f in good], "skipped": [list(s) for s in skipped]})
    return res


# ----------------------------------------------------------------------------- index
@dataclass
class IndexBuild:
    index: Any  # an index backend (deephash.index.backend): HashIndex, MilvusIndex
    path: Path | str  # where it was written: the file, or the milvus:// URI
    skipped: Skipped
    encoding: dict[str, Any] = field(default_factory=dict)  # the engine's stats (deephash.engines)
    ignored: list[str] = field(default_factory=list)  # files of the archive that are no images (by suffix)


def _model_ref(checkpoint: str | os.PathLike, out: str | os.PathLike) -> str:
    """How an index names its model: relative to a local index file's folder (the pair moves together),
    absolute for a server index."""
    from deephash.index.backend import local_path

    full, file = Path(checkpoint).resolve(), local_path(out)
    return str(full) if file is None else os.path.relpath(full, file.resolve().parent)


def build_index(archive, checkpoint: str | os.PathLike, out: str | os.PathLike, *, store_features: bool = True,
                progress: bool = True, engine: str = "local", engine_options: dict[str, Any] | None = None,
                int8: bool = False, **backend_options: Any) -> IndexBuild:
    """Encode every image of ``archive`` (an :class:`ImageArchive` or its path) with the checkpoint's
    backbone + hasher and write an index at ``out`` — a file, or ``milvus://HOST:PORT/COLLECTION``
    (:func:`deephash.index.backend.new_index`; ``backend_options`` are that backend's, e.g. ``token``,
    ``index_type``) — that records the model (path and identity).

    ``engine`` names where the encoding runs (:mod:`deephash.engines`: ``local``, this process;
    ``ray``, a Ray cluster), with ``engine_options`` (e.g. ``{"workers": 2, "address": ...}``);
    every engine gives the same codes, ids and failed images. ``int8`` (local engine): the backbone
    quantised, calibrated on the archive (recorded in the index's ``meta["backbone"]``)."""
    from deephash.data import open_archive
    from deephash.engines import create_engine
    from deephash.index.backend import local_path, new_index
    from deephash.model import HashModel
    from deephash.utils import check_writable

    file = local_path(out)  # None for a server index; a bad URI is refused here, before any work
    if file is not None:
        check_writable(file)  # before the archive is encoded, not after
    runner = create_engine(engine, **(engine_options or {}))  # a bad engine or option is refused before any work
    if not hasattr(archive, "paths"):
        archive = open_archive(archive)
    model = HashModel.load(checkpoint)
    if int8:
        if engine != "local":
            raise ConfigError(f"int8 inference runs with the local engine only; got engine {engine!r}")
        model.backbone = _int8_for(model.backbone, archive)
    enc = runner.encode(archive, checkpoint, model, progress=progress)
    labels = archive.labels[enc.ids] if archive.labelled else None  # a flat unlabelled folder: none
    index = new_index(out, model.hasher.n_bits, class_names=archive.class_names, code_kind=model.hasher.code_kind,
                      meta={"model": _model_ref(checkpoint, out), "model_identity": model.identity.to_dict(),
                            "method": model.hasher.name, "backbone": model.backbone.describe(),
                            "archive_root": str(archive.root.resolve()), "deephash_version": __version__},
                      feature_dim=enc.features.shape[1] if store_features else None,
                      labels=None if labels is None else ("multi" if labels.ndim == 2 else "single"), **backend_options)
    index.add(enc.codes, ids=enc.ids, paths=[archive.paths[i] for i in enc.ids], labels=labels,
              features=enc.features if store_features else None)
    index.finish()
    return IndexBuild(index, str(out) if file is None else file, archive.skipped + enc.failed, enc.stats,
                      list(archive.ignored))


@dataclass
class IndexUpdate:
    """What :func:`update_index` changed."""

    added: int
    removed: int
    skipped: Skipped
    total: int
    rewritten: bool  # True: the index file was rewritten; False: the changes went to its journal
    journal_bytes: int
    ignored: list[str] = field(default_factory=list)  # files of the archive that are no images (by suffix)
    encoding: dict[str, Any] = field(default_factory=dict)  # the engine's stats for the new images (deephash.engines)


def _index_labels(index, archive, rows: np.ndarray) -> np.ndarray | None:
    """``archive.labels[rows]`` in the index's class numbering; new class names are appended to it."""
    if not index.has_labels:
        return None
    if archive.labels.ndim == 2:
        if list(archive.class_names) != list(index.class_names):
            raise ConfigError(f"this multi-label archive's classes ({', '.join(archive.class_names)}) differ from the "
                              f"index's ({', '.join(index.class_names)}); rebuild the index with deephash index")
        return archive.labels[rows]
    index.add_class_names([archive.class_names[int(lab)] for lab in archive.labels[rows]])
    names = index.class_names
    return np.asarray([names.index(archive.class_names[int(lab)]) for lab in archive.labels[rows]], np.int64)


def update_index(archive, checkpoint: str | os.PathLike, index_path: str | os.PathLike, *, prune: bool = False,
                 progress: bool = True, fold_ratio: float = 0.25, engine: str = "local",
                 engine_options: dict[str, Any] | None = None, **backend_options: Any) -> IndexUpdate:
    """Bring an index (a file or ``milvus://...``) up to date with its archive without retraining:
    encode and add the images it does not hold yet (matched by path), and with ``prune`` remove the
    entries whose files are gone. A local file gets the changes in its journal, and is rewritten (the
    journal folded in) when the journal passes ``fold_ratio`` of it or new class names appeared.
    ``engine`` / ``engine_options``: where the new images are encoded, as in :func:`build_index`
    (every engine adds the same codes, features and ids)."""
    from deephash.data import open_archive
    from deephash.engines import create_engine
    from deephash.index.backend import open_index
    from deephash.model import HashModel, model_path_of, require_same_model

    runner = create_engine(engine, **(engine_options or {}))  # a bad engine or option is refused before any work
    if not hasattr(archive, "paths"):
        archive = open_archive(archive)
    index = open_index(index_path, **backend_options)
    where = index.location
    model = HashModel.load(checkpoint)
    if index.meta.get("model_identity"):
        require_same_model(index.meta, model, where)
    else:  # an index from before identities were recorded: the model must be the file it names
        used = model_path_of(index.meta, where).resolve()
        if used != Path(checkpoint).resolve():
            raise ConfigError(f"{where} was built with {used}, not {Path(checkpoint).resolve()}: codes of another "
                              "model are not comparable; use that model, or rebuild the index with deephash index")
    if (index.meta.get("backbone") or {}).get("int8"):
        raise ConfigError(f"{where} was built with an int8 backbone, which an update cannot reproduce (its "
                          "calibration images may have changed): rebuild it with deephash index --int8")
    root = index.meta.get("archive_root")
    if root and Path(root).resolve() != archive.root.resolve():
        raise ConfigError(f"{where} indexes the archive at {root}; got {archive.root.resolve()}")
    have_ids, have_paths = index.id_paths()
    have = set(have_paths)
    new_rows = np.array([i for i, p in enumerate(archive.paths) if p not in have], np.int64)
    added = np.zeros(0, np.int64)
    failed: Skipped = []
    stats: dict[str, Any] = {}
    if len(new_rows):
        enc = runner.encode(archive, checkpoint, model, positions=new_rows, progress=progress)
        failed, stats = enc.failed, enc.stats
        if len(enc.ids):
            added = index.add(enc.codes, paths=[archive.paths[i] for i in enc.ids],
                              labels=_index_labels(index, archive, enc.ids),
                              features=enc.features if index.has_features else None)
    gone: list[int] = []
    if prune:
        present = set(archive.paths)
        gone = [int(i) for i, p in zip(have_ids, have_paths) if not p.startswith(UPLOAD_PREFIX) and p not in present]
        if gone:
            index.remove(gone)
    rewritten = index.persist(added, gone, fold_ratio=fold_ratio)
    return IndexUpdate(int(len(added)), len(gone), archive.skipped + failed, len(index), rewritten,
                       getattr(index, "journal_bytes", 0), list(archive.ignored), stats)


# ----------------------------------------------------------------------------- search
def open_for_search(index_path: str | os.PathLike, model: str | os.PathLike | None = None, **backend_options: Any):
    """Open an index (a file or ``milvus://...``: :func:`deephash.index.backend.open_index`) and the model
    to query it with (the one it names unless ``model`` is given); a model other than the one the index
    was built with is refused. Returns ``(index, model)``."""
    from deephash.index.backend import open_index, require_model_codes
    from deephash.model import HashModel, model_path_of, require_same_model

    index = open_index(index_path, **backend_options)
    where = index.location
    m = HashModel.load(model if model is not None else model_path_of(index.meta, where))
    require_same_model(index.meta, m, where)
    require_model_codes(index, m.hasher, where)
    return index, m


def self_id_finder(index):
    """``path -> id`` of an indexed image, for a query file that lies inside the indexed archive."""
    root = index.meta.get("archive_root")
    if not root:
        return lambda p: None
    root = Path(root).resolve()

    def find(p: Path) -> int | None:
        full = Path(p).resolve()
        if not full.is_relative_to(root):
            return None
        rel = full.relative_to(root).as_posix()
        return index.ids_of_paths([rel]).get(rel)

    return find


@dataclass
class SearchAnswer:
    """One query's answer: what was asked (a file or an id), the hits, and their JSON (the shape
    ``deephash search --json`` prints and the HTTP API returns)."""

    query: str
    hits: Any  # deephash.query.Hits
    json: dict[str, Any]


def make_query(model, code: np.ndarray, feature: np.ndarray | None, timings: dict[str, float] | None = None,
               self_id: int | None = None, name: str | None = None):
    """A :class:`deephash.query.Query` for ``model``'s index: its code, and with the float ``feature`` the
    model's distance from it to stored codes (``hasher.query_distances``: the asymmetric distance that
    ranks a PQ index; a Hamming view ranks by the code and never calls it)."""
    from deephash.query import Query

    dist = None
    if feature is not None:
        f = np.atleast_2d(np.asarray(feature, np.float32))
        dist = lambda codes: model.hasher.query_distances(f, codes)  # noqa: E731
    return Query(code, feature, self_id=self_id, distances=dist, timings=dict(timings or {}), name=name)


@dataclass
class SearchResults:
    """The answers, in query order (files, then ids), and the query files that could not be read."""

    answers: list[SearchAnswer]
    skipped: Skipped

    def __iter__(self):
        return iter(self.answers)

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, i: int) -> SearchAnswer:
        return self.answers[i]


def search(index_path: str | os.PathLike, images: Sequence[str | os.PathLike | bytes] = (), *, ids: Sequence[int] = (),
           k: int = 10, radius: int | None = None, label: str | None = None, rerank: bool = False,
           exclude_self: bool = False, model: str | os.PathLike | None = None, batch_size: int = 64,
           loaded=None, **backend_options: Any) -> SearchResults:
    """Search image files (folders expand to their images) and/or indexed image ids in an index (a file
    or ``milvus://HOST:PORT/COLLECTION``).

    One process answers them all: the index and model are loaded once, images are encoded in
    batches. ``k`` is capped at the index size (``json["k_capped_at"]`` says so). ``loaded`` is an
    ``(index, model)`` pair from :func:`open_for_search` to reuse."""
    from deephash.query import Query, answer_json, search as run

    if not images and not ids:
        raise ConfigError("nothing to search: give query images or ids")
    index, m = loaded if loaded is not None else open_for_search(index_path, model, **backend_options)
    snap = index.snapshot()
    params = {"k": k, "radius": radius, "rerank": bool(rerank), "label": label, "exclude_self": bool(exclude_self)}
    out: list[SearchAnswer] = []

    def one(q: Query, name: str) -> None:
        h = run(snap, q, k, radius=radius, label=label, rerank=rerank or None, exclude_self=exclude_self)
        out.append(SearchAnswer(name, h, answer_json(h, q, index.class_names, **params)))

    files: list[Path | bytes] = []
    skipped: Skipped = []
    for im in images:
        files += [im] if isinstance(im, bytes) else collect_images([im], skipped)
    find_self = self_id_finder(index)
    names = [("upload" if isinstance(f, bytes) else str(f)) for f in files]
    for pos, c, f, t in m.encode_batches(files, batch_size=batch_size):
        if c is None:
            if len(files) == 1:
                raise DataError(t)
            skipped.append((names[pos[0]], t))
            continue
        share = {s: v / len(pos) for s, v in t.items()}  # per-query share of the batch's stage times
        for j, i in enumerate(pos):
            sid = None if isinstance(files[i], bytes) else find_self(files[i])
            one(make_query(m, c[j : j + 1], f[j : j + 1], share, self_id=sid, name=names[i]), names[i])
    for i in ids:
        q = Query.of_id(snap, int(i))
        one(make_query(m, q.code, q.feature, self_id=int(i), name=f"id {int(i)}"), f"id {int(i)}")
    return SearchResults(out, skipped)


# ----------------------------------------------------------------------------- evaluate / demo
def evaluate(archive, protocol, out_dir: str | os.PathLike, **kw: Any) -> dict[str, Any]:
    """``deephash evaluate``: checkpoints and/or head-only methods under a named protocol; writes the
    report and returns its results (see :func:`deephash.eval.run.evaluate_archive`)."""
    from deephash.data import open_archive
    from deephash.eval.protocols import get_protocol
    from deephash.eval.run import evaluate_archive

    if not hasattr(archive, "paths"):
        archive = open_archive(archive)
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    return evaluate_archive(archive, protocol, out_dir, **kw)


def demo(cfg=None) -> dict[str, Any]:
    """``deephash demo``: CIFAR-10 end to end (see :class:`deephash.demo.DemoConfig`)."""
    from deephash.demo import DemoConfig, run_demo

    return run_demo(cfg or DemoConfig())
