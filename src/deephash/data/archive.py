"""Image archives: an image folder (one sub-folder per class, optionally below split folders),
a flat folder of unlabelled images, a plain folder plus a CSV/JSON label file (single- or
multi-label, with an optional ``split`` column), or a .tar.gz/.zip of any of these."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.data.images import IMAGE_SUFFIXES
from deephash.errors import DataError
from deephash.utils import cache_dir, limit_from_env, sha1_of

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation", "query", "database", "db")
#: the label of every image of an unlabelled archive (the index and the service read it as "no label")
UNLABELLED = -1
#: the label file's column (CSV) or key (JSON) naming each image's split, e.g. train / test
SPLIT_COLUMN = "split"


@dataclass
class ImageArchive:
    """A listed archive: paths relative to ``root``, labels, and the files that were skipped.

    ``labels`` is ``int64 (n,)`` for single-label archives and ``uint8 (n, n_classes)``
    multi-hot for multi-label ones; an unlabelled archive (a flat folder of images) has no
    class names and every label is ``UNLABELLED`` (-1). ``splits[i]`` names the split image i
    belongs to (its split folder or the label file's ``split`` column; ``""`` when none).
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    splits: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: files that are no images by their suffix (notes.txt, labels.csv): ignored, not "bad images"
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @property
    def labelled(self) -> bool:
        """False for a flat folder of unlabelled images (labels all ``UNLABELLED``)."""
        return bool(self.class_names)

    def abspath(self, i: int) -> Path:
        return self.root / self.paths[i]

    def subset(self, idx: Sequence[int] | np.ndarray) -> "ImageArchive":
        idx = np.asarray(idx, dtype=np.int64)
        return ImageArchive(self.root, [self.paths[i] for i in idx], self.labels[idx], self.class_names,
                            [self.splits[i] for i in idx], list(self.skipped), list(self.ignored))

    def split_indices(self, name: str) -> np.ndarray:
        idx = np.flatnonzero(np.asarray(self.splits) == name)
        if not len(idx):
            have = sorted(set(self.splits)) or ["(none)"]
            raise DataError(f"archive {self.root} has no split {name!r}; it has: {', '.join(have)}")
        return idx

    def fingerprint(self) -> str:
        """Changes whenever the file list (names, sizes, mtimes) changes: keys the feature cache."""
        stats = []
        for p in self.paths:
            try:
                st = (self.root / p).stat()
                stats.append((p, st.st_size, int(st.st_mtime)))
            except OSError:  # gone since the listing: reading it will report it
                stats.append((p, -1, -1))
        return sha1_of(str(self.root.resolve()), stats)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


#: file beside an unpacked archive's contents listing the members that were not unpacked (and why)
UNPACK_SKIPPED = ".deephash-unpack-skipped.json"


def link_problem(p: Path, real_root: Path) -> str | None:
    """Why the symbolic link ``p`` is not followed (None when ``p`` is no link, or a link to a file
    inside the archive). Looks only at the link itself (lstat, readlink): nothing is opened."""
    if not os.path.islink(p):
        return None
    target = os.readlink(p)
    real = Path(os.path.realpath(p))
    if not real.is_relative_to(real_root):
        return f"symbolic link leaving the archive (to {target}): skipped"
    if not real.exists():
        return f"broken symbolic link (to {target}): skipped"
    if real.is_dir():
        return f"symbolic link to a folder (to {target}): not followed, its images are indexed where they lie"
    return None


#: an archive member unpacking to more bytes than this is skipped and reported (a decompression bomb:
#: no image file is that large); ``DEEPHASH_MAX_MEMBER_BYTES`` changes it
DEFAULT_MAX_MEMBER_BYTES = 2**30
MAX_MEMBER_BYTES_ENV = "DEEPHASH_MAX_MEMBER_BYTES"
#: room left free on the cache disk when an archive is unpacked
_FREE_MARGIN_BYTES = 256 * 2**20
#: longest symbolic-link target read from a .zip (PATH_MAX)
_MAX_LINK_BYTES = 4096

_PATH_LEAVES = "member path leaves the archive (absolute or with ..): skipped"
_SPECIAL_FILE = "not a regular file (a device or a pipe): skipped"


def max_member_bytes() -> int:
    """The member size limit in force: ``$DEEPHASH_MAX_MEMBER_BYTES`` when set, else 1 GiB."""
    return limit_from_env(MAX_MEMBER_BYTES_ENV, DEFAULT_MAX_MEMBER_BYTES, unit="bytes", ceiling_exp=62)


def _link_leaves(kind: str, target: str) -> str:
    return f"{kind} link leaving the archive (to {target}): skipped"


def _too_large(size: int, limit: int) -> str:
    return (f"unpacks to {size} bytes, more than the limit of {limit} for one member (a decompression bomb? "
            f"${MAX_MEMBER_BYTES_ENV} raises it): skipped")


class _Unpacking:
    """One archive being unpacked into ``dest``: the members skipped (name, why), the member size
    limit, and the bytes the cache disk can take (an archive needing more is refused whole)."""

    def __init__(self, archive: Path, dest: Path, limit: int) -> None:
        self.archive, self.dest, self.limit = archive, dest, limit
        self.real_dest = Path(os.path.realpath(dest))
        self.skipped: list[tuple[str, str]] = []
        self.room = shutil.disk_usage(dest).free - _FREE_MARGIN_BYTES
        self.used = 0

    def take(self, nbytes: int) -> None:
        """Count ``nbytes`` more to unpack; refuse the archive once they would not fit on the disk."""
        self.used += nbytes
        if self.used > self.room:
            raise DataError(f"{self.archive}: unpacking it needs more than the {max(self.room, 0) / 2**30:.1f} GiB "
                            f"free on the disk of the cache folder {self.dest.parent} (less a margin); "
                            "free some space or set DEEPHASH_CACHE to a larger disk")

    def inside(self, target: str | os.PathLike) -> bool:
        """Whether ``target`` resolves (through the links unpacked so far) inside the archive's folder."""
        return Path(os.path.realpath(target)).is_relative_to(self.real_dest)


def _unpack_tar(path: Path, u: _Unpacking) -> None:
    """tarfile's "data" filter, member by member (a refused member is skipped and reported), absolute
    names refused too, and the member size limit, checked on the members' headers (a sparse member's
    size is the one it unpacks to) before any data is read."""

    def screen(member: tarfile.TarInfo, dest: str):
        if member.name.startswith("/"):  # the filter would unpack it below dest: it is refused, as from a .zip
            u.skipped.append((member.name, _PATH_LEAVES))
            return None
        try:
            member = tarfile.data_filter(member, dest)
        except tarfile.FilterError as e:
            u.skipped.append((member.name, _filter_reason(member, e)))
            return None
        if member.size > u.limit:
            u.skipped.append((member.name, _too_large(member.size, u.limit)))
            return None
        u.take(member.size)
        return member

    with tarfile.open(path) as tf:
        tf.extractall(u.dest, filter=screen)


def _unpack_zip(path: Path, u: _Unpacking) -> None:
    """Every member screened as :func:`_unpack_tar` screens a tar member (a refused member is skipped
    and reported, the rest unpacked): no absolute path or one that ``..`` or a link takes outside, no
    link leaving the archive (links inside it are made, as from a tar), no device or pipe, nothing
    encrypted, no member over the size limit; a damaged member is skipped alone. Sizes are the
    central directory's, checked before any data is read (zipfile stops a member at its declared
    size), and their total must fit on the disk."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        u.take(sum(i.file_size for i in infos if i.file_size <= u.limit))
        for info in infos:
            why = _unpack_zip_member(zf, info, u)
            if why is not None:
                u.skipped.append((info.filename, why))


def _unpack_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, u: _Unpacking) -> str | None:
    """Unpack one member; returns why it was skipped (None when it was unpacked)."""
    name = info.filename
    if not name:
        return "a member without a name: skipped"
    if name.startswith("/"):
        return _PATH_LEAVES
    # where the system would put it: its folder resolved (links unpacked before, then ..), never
    # the name normalised as text — "l/../../x" with l a link to a/b lies at a/x, not at ../x
    path = u.dest / name
    target = Path(os.path.realpath(path.parent)) / path.name if path.name != ".." else Path(os.path.realpath(path))
    if not target.is_relative_to(u.real_dest):
        return _PATH_LEAVES
    if target == u.real_dest:
        return None if info.is_dir() else "names the archive's own folder, not a file in it: skipped"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        kind = stat.S_IFDIR
    if kind not in (0, stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR):  # 0: written without a Unix mode (a regular file)
        return _SPECIAL_FILE
    if info.flag_bits & 0x1:
        return "encrypted (deephash has no password for it): skipped"
    if info.file_size > u.limit:
        return _too_large(info.file_size, u.limit)
    try:
        if kind == stat.S_IFDIR:
            target.mkdir(parents=True, exist_ok=True)
            return None
        if kind == stat.S_IFLNK:
            if info.file_size > _MAX_LINK_BYTES:
                return f"symbolic link whose target is {info.file_size} bytes long (at most {_MAX_LINK_BYTES}): skipped"
            link = os.fsdecode(zf.read(info))
            if not link or "\0" in link:
                return "symbolic link to no valid path: skipped"
            if os.path.isabs(link) or not u.inside(target.parent / link):
                return _link_leaves("symbolic", link)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()  # a later member of the same name wins, as in a tar; never written through a link
        if kind == stat.S_IFLNK:
            os.symlink(link, target)
            return None
        with zf.open(info) as src, open(target, "xb") as out:
            shutil.copyfileobj(src, out, 2**20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        with contextlib.suppress(OSError):
            target.unlink()
        return f"damaged or unreadable member ({str(e) or type(e).__name__}): skipped"
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as e:  # its name clashes with another member's
        return f"cannot be unpacked ({e.strerror}): skipped"
    return None


#: how each archive kind is unpacked, by its name's ending (anything else is a tar, compressed or not)
UNPACKERS = {".zip": _unpack_zip}


def unpack_archive_file(path: Path) -> Path:
    """Unpack a .tar.gz/.tgz/.tar/.zip once into the cache; returns the unpacked folder. Members that
    are unsafe (see :func:`_unpack_zip`, :func:`_unpack_tar`) are skipped and listed beside the files."""
    st = path.stat()
    limit = max_member_bytes()  # a changed limit unpacks again (the default keeps the key it always had)
    key = sha1_of(str(path.resolve()), st.st_size, int(st.st_mtime), *([limit] if limit != DEFAULT_MAX_MEMBER_BYTES else []))
    dest = cache_dir() / "archives" / (path.name.split(".")[0] + "-" + key[:12])
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a large archive takes minutes: say what is happening (once; later runs reuse the folder)
    print(f"deephash: unpacking {path.name} ({st.st_size / 2**20:.0f} MiB) into {dest} — once, later runs reuse it",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        u = _Unpacking(path, tmp, limit)
        unpack = next((f for suffix, f in UNPACKERS.items() if path.name.lower().endswith(suffix)), _unpack_tar)
        unpack(path, u)
        if u.skipped:
            (tmp / UNPACK_SKIPPED).write_text(json.dumps(u.skipped))
    except DataError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot unpack archive ({why}); expected a readable .tar.gz, .tar or .zip") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, dest)
    print(f"deephash: unpacked {path.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return dest


def _not_regular(f: Path) -> str | None:
    """Why ``f`` (no link leaving the archive) is not read: a pipe, socket or device would block or mislead."""
    return None if f.is_file() else "not a regular file (a pipe, socket or device): skipped"


def _filter_reason(member: tarfile.TarInfo, e: Exception) -> str:
    if isinstance(e, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        return _link_leaves("symbolic" if member.issym() else "hard", member.linkname)
    if isinstance(e, (tarfile.AbsolutePathError, tarfile.OutsideDestinationError)):
        return _PATH_LEAVES
    if isinstance(e, tarfile.SpecialFileError):
        return _SPECIAL_FILE
    return f"refused by the safe unpacking filter ({e}): skipped"


def _unpack_skipped(unpacked: Path) -> list[tuple[str, str]]:
    """The members that unpacking skipped (written beside the unpacked files)."""
    f = unpacked / UNPACK_SKIPPED
    try:
        return [(str(a), str(b)) for a, b in json.loads(f.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _descend_single(root: Path) -> Path:
    """An unpacked archive often holds one top folder: use it as the root."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() not in SPLIT_NAMES:
            root = entries[0]
        else:
            return root


def open_archive(path: str | os.PathLike, *, split: str | None = None, labels_file: str | os.PathLike | None = None) -> ImageArchive:
    """List an archive. ``split`` keeps one split: ``root/<split>/`` of an image folder, or the rows of
    a label file whose ``split`` column holds it; an archive with no split information refuses it.
    Paths in a label file are relative to the archive folder (the unpacked folder for a .tar.gz/.zip)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"archive {str(p)!r} does not exist (expected an image folder, a .tar.gz or a .zip)")
    if p.is_file():
        if not p.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"{p}: expected a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive; got a {p.suffix or 'suffix-less'} file")
        unpacked = unpack_archive_file(p)
        pre = _unpack_skipped(unpacked)
        p = _descend_single(unpacked)
    else:
        pre = []
    if labels_file is None:
        from deephash.data.idx import idx_image_folder, is_idx_folder

        if is_idx_folder(p):  # MNIST-style IDX files: written once as an image folder in the cache
            p = idx_image_folder(p)
    a = _from_label_file(p, Path(labels_file), split) if labels_file is not None else _from_image_folder(p, split)
    a.skipped[:0] = pre
    return a


def _listable_dir(d: Path, real_root: Path, skipped: list[tuple[str, str]], root: Path) -> bool:
    """``d`` is a folder to list: not hidden, and not a link (reported when it is one)."""
    if d.name.startswith("."):
        return False
    why = link_problem(d, real_root)
    if why is not None:
        rel = d.relative_to(root).as_posix()
        if (rel, why) not in skipped:
            skipped.append((rel, why))
        return False
    return d.is_dir()


def _from_image_folder(root: Path, split: str | None) -> ImageArchive:
    real_root = Path(os.path.realpath(root))
    skipped: list[tuple[str, str]] = []
    subdirs = sorted(d for d in root.iterdir() if _listable_dir(d, real_root, skipped, root))
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    if split is not None:
        if not (root / split).is_dir():
            why = (f"found folders: {', '.join(d.name for d in subdirs)}" if subdirs else
                   "this archive has no split information (no split folders such as train/ and test/)")
            raise DataError(f"{root}: no split folder {split!r}; {why}")
        parts = [(split, root / split)]
    elif split_dirs:
        parts = [(d.name, d) for d in split_dirs]
    else:
        parts = [("", root)]
    def is_class_dir(c: Path) -> bool:  # a folder named like an image file (x.jpg/) is no class
        return _listable_dir(c, real_root, skipped, root) and not _is_image(c)

    class_names = sorted({c.name for _, base in parts for c in base.iterdir() if is_class_dir(c)})
    if not class_names:
        return _flat_folder(root, parts, skipped)
    cidx = {c: i for i, c in enumerate(class_names)}
    paths, labels, splits, ignored = [], [], [], []
    for sname, base in parts:
        for f in sorted(base.iterdir()):  # what lies beside the class folders belongs to no class
            if f.name.startswith(".") or os.path.islink(f) and link_problem(f, real_root):
                continue
            rel = f.relative_to(root).as_posix()
            if _is_image(f) and f.is_dir():
                skipped.append((rel, "a folder named like an image file: skipped"))
            elif _is_image(f):
                skipped.append((rel, "an image beside the class folders, in none of them: skipped (its class is unknown)"))
            elif f.is_file():
                ignored.append(rel)
        for cdir in sorted(c for c in base.iterdir() if is_class_dir(c)):
            for dirpath, dirnames, filenames in os.walk(cdir):  # does not descend into linked folders
                dirnames.sort()
                for dn in dirnames:
                    d = Path(dirpath) / dn
                    if _listable_dir(d, real_root, skipped, root) and _is_image(d) and not any(
                            _is_image(f) for f in d.rglob("*")):  # x.jpg/ holding no image: say so
                        skipped.append((d.relative_to(root).as_posix(), "a folder named like an image file: skipped"))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    f = Path(dirpath) / fn
                    rel = f.relative_to(root).as_posix()
                    why = link_problem(f, real_root) or _not_regular(f)
                    if why is not None:
                        skipped.append((rel, why))
                        continue
                    if not _is_image(f):
                        ignored.append(rel)
                        continue
                    paths.append(rel)
                    labels.append(cidx[cdir.name])
                    splits.append(sname)
    if not paths:
        raise DataError(f"{root}: found class folders but no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return ImageArchive(root, paths, np.asarray(labels, np.int64), class_names, splits, skipped, ignored)


def _flat_folder(root: Path, parts: list[tuple[str, Path]], skipped: list[tuple[str, str]]) -> ImageArchive:
    """Images directly inside the folder (or its split folders), no class folders: an unlabelled archive."""
    real_root = Path(os.path.realpath(root))
    paths, splits, ignored = [], [], []
    for sname, base in parts:
        for f in sorted(base.iterdir()):
            if f.name.startswith("."):
                continue
            rel = f.relative_to(root).as_posix()
            why = link_problem(f, real_root)
            if why is not None:
                if (rel, why) not in skipped:
                    skipped.append((rel, why))
                continue
            if not _is_image(f):
                if f.is_file():
                    ignored.append(rel)
                continue  # a folder (or a pipe) without an image suffix: not part of a flat archive
            why = _not_regular(f)
            if why is not None:
                skipped.append((rel, "a folder named like an image file: skipped" if f.is_dir() else why))
                continue
            paths.append(rel)
            splits.append(sname)
    if not paths:
        raise DataError(
            f"{root}: expected image files ({', '.join(sorted(IMAGE_SUFFIXES))}) or one sub-folder per class "
            "(e.g. root/train/cat/001.jpg or root/cat/001.jpg); found neither"
        )
    return ImageArchive(root, paths, np.full(len(paths), UNLABELLED, np.int64), [], splits, skipped, ignored)


def _split_labels(value: str) -> list[str]:
    for sep in (";", "|", ","):
        if sep in value:
            return [v.strip() for v in value.split(sep) if v.strip()]
    return [value.strip()] if value.strip() else []


def _json_rows(data) -> list[tuple[str, list[str], str]]:
    """``{path: labels}``, ``{path: {"labels": ..., "split": ...}}`` or ``[{"path", "labels", "split"}, ...]``."""
    if isinstance(data, dict):
        items = [dict(v, path=k) if isinstance(v, dict) else {"path": k, "labels": v} for k, v in data.items()]
    else:
        items = list(data)
    rows = []
    for d in items:
        lab = d.get("labels", d.get("label"))
        labs = [str(x) for x in lab] if isinstance(lab, list) else _split_labels("" if lab is None else str(lab))
        rows.append((str(d["path"]), labs, str(d.get(SPLIT_COLUMN) or "")))
    return rows


def _from_label_file(root: Path, labels_file: Path, split: str | None = None) -> ImageArchive:
    if not labels_file.is_file():
        raise DataError(f"label file {str(labels_file)!r} does not exist")
    rows: list[tuple[str, list[str], str]] = []
    suffix = labels_file.suffix.lower()
    try:
        if suffix == ".json":
            rows = _json_rows(json.loads(labels_file.read_text()))
        elif suffix in (".csv", ".tsv", ".txt"):
            with open(labels_file, newline="") as fh:
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                cols = {c.lower(): c for c in (reader.fieldnames or [])}
                pc = cols.get("path") or cols.get("file") or cols.get("filename") or cols.get("image")
                lc = cols.get("labels") or cols.get("label") or cols.get("class")
                if pc is None or lc is None:
                    raise DataError(
                        f"{labels_file}: expected a header with a path column (path/file/filename/image) and a label column "
                        f"(label/labels/class); got columns {reader.fieldnames}"
                    )
                sc = cols.get(SPLIT_COLUMN)
                for r in reader:
                    rows.append((r[pc], _split_labels(r[lc] or ""), (r.get(sc) or "").strip() if sc else ""))
        else:
            raise DataError(f"{labels_file}: expected a .csv, .tsv or .json label file; got {suffix or 'no suffix'}")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, csv.Error) as e:
        raise DataError(f"{labels_file}: malformed label file ({type(e).__name__}: {e})") from None
    if not rows:
        raise DataError(f"{labels_file}: holds no rows")
    if split is not None:
        have = sorted({sp for _, _, sp in rows if sp})
        if not have:
            raise DataError(f"--split {split}: {labels_file} has no split information (add a {SPLIT_COLUMN!r} column "
                            "naming each image's split, e.g. train / test); leave out --split to use every row")
        rows = [r for r in rows if r[2] == split]
        if not rows:
            raise DataError(f"--split {split}: no row of {labels_file} is in split {split!r}; its splits are: {', '.join(have)}")
    multi = any(len(labs) != 1 for _, labs, _ in rows)
    class_names = sorted({lab for _, labs, _ in rows for lab in labs})
    cidx = {c: i for i, c in enumerate(class_names)}
    paths, labels, splits, skipped = [], [], [], []
    real_root = Path(os.path.realpath(root))
    for pth, labs, sp in rows:
        f = root / pth
        if not Path(os.path.realpath(f)).is_relative_to(real_root):
            skipped.append((pth, "listed in the label file but lies outside the archive folder (an absolute path, "
                                 "'..' or a link leaving it): skipped"))
            continue
        why = link_problem(f, real_root)
        if why is not None:
            skipped.append((pth, why))
            continue
        if not f.exists():
            skipped.append((pth, "listed in the label file but missing on disk"))
            continue
        if not f.is_file():
            skipped.append((pth, "listed in the label file but " + ("a folder" if f.is_dir() else "not a regular file")
                            + ", not an image file: skipped"))
            continue
        if not _is_image(f):
            skipped.append((pth, f"not an image file (suffix {f.suffix or 'none'})"))
            continue
        paths.append(Path(pth).as_posix())
        if multi:
            v = np.zeros(len(class_names), np.uint8)
            v[[cidx[x] for x in labs]] = 1
            labels.append(v)
        else:
            labels.append(cidx[labs[0]])
        splits.append(sp)
    if not paths:
        raise DataError(f"{labels_file}: none of the {len(rows)} listed files exists as an image under {root}")
    lab = np.stack(labels) if multi else np.asarray(labels, np.int64)
    return ImageArchive(root, paths, lab, class_names, splits, skipped)
