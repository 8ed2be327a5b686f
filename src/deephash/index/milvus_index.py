"""MilvusIndex: packed binary codes in a Milvus collection, searched by Hamming distance on the server.

The same code talks to a standalone server, a cluster (``uri="http://host:19530"``, optional
``token``) and milvus-lite (``uri="/path/file.db"``; BIN_FLAT only). Codes travel as they are
packed by :func:`deephash.codes.pack_bits`: Milvus's ``BINARY_VECTOR`` of ``dim`` bits is
``dim / 8`` bytes and its HAMMING metric is ``popcount(a XOR b)`` over those bytes, so the
order of bits inside a byte does not change any distance as long as queries and database are
packed alike (``tests/test_milvus_index.py`` checks every distance against
:func:`~deephash.codes.hamming_matrix`).

Collection schema: ``id`` INT64 primary key (the image id, chosen by deephash, not auto),
``code`` BINARY_VECTOR(n_bits), and unless ``metadata=False``: ``path`` VARCHAR and ``label``
JSON (``{"y": int}`` or ``{"y": [class, ...]}`` for multi-label).

As a backend of :mod:`deephash.index.backend` (``open_index("milvus://HOST:PORT/COLLECTION")``,
the CLI's ``--out`` / ``INDEX`` argument, ``deephash serve``):

- the collection's **description** is JSON recording what built it (``n_bits``, ``feature_dim``,
  ``labels`` "single" / "multi" / null and ``meta``: the model's identity — method, bits and the
  checkpoint's sha256 digest — its path, the backbone, the archive root), so that a search or a
  service with another model is refused; the class names live in the collection's property
  ``deephash.class_names`` (they can grow on ``--update``);
- **float features** (for re-ranking) live in a second collection ``COLLECTION__features``
  (``id`` INT64 primary key, ``feature`` FLOAT_VECTOR(dim), a FLAT index it needs to load): Milvus
  2.3 allows one vector field per collection (2.4 allows several); they are written before the
  codes, so a code is never searchable without its features;
- reads use the **Strong** consistency level: a search waits for the server's clock to pass every
  acknowledged write, so a replica sees an image another replica added (or removed) as soon as
  that write was answered; ``add`` without ids picks up after the largest stored id (one writer:
  ``deephash index``), :meth:`new_ids` draws random ids in ``[2**40, 2**52)`` that no other
  writer will take (the service's uploads; below 2**53 so a browser reads them exactly);
- the token comes from ``token=`` or ``$DEEPHASH_MILVUS_TOKEN`` and is never part of a message.

``pymilvus`` is an optional dependency: ``pip install 'deephash[milvus]'``.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import time
from urllib.parse import parse_qs, urlsplit
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from deephash.errors import BackendError, BackendUnavailableError, ConfigError, DataError
from deephash.index.backend import register_backend
from deephash.codes import check_codes, check_n_bits

INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
MAX_TOPK = 16384  # Milvus's limit on k (quota.limits.topK)
#: ids drawn by :meth:`MilvusIndex.new_ids` (several writers): [UPLOAD_ID_BASE, 2**52)
UPLOAD_ID_BASE = 1 << 40
#: suffix of the collection holding the float features (Milvus 2.3: one vector field per collection)
FEATURES_SUFFIX = "__features"
#: ``--milvus-index`` names -> Milvus index types; "auto": BIN_FLAT up to AUTO_IVF_FROM codes, else BIN_IVF_FLAT
INDEX_CHOICES = {"flat": "BIN_FLAT", "ivf": "BIN_IVF_FLAT"}
AUTO_IVF_FROM = 1_000_000
#: a BIN_FLAT build of this many codes or more is sealed and indexed at the end (finish)
FLUSH_FROM = 100_000
TOKEN_ENV = "DEEPHASH_MILVUS_TOKEN"
#: paths of images added through the service (as in deephash.index.hash_index.UPLOAD_PREFIX)
UPLOAD_PATH_PREFIX = "@uploads/"


def parse_milvus_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """``milvus://HOST:PORT/COLLECTION[?nprobe=16&timeout=10]`` -> (``http://HOST:PORT``, COLLECTION, options);
    ``timeout``: seconds to wait for the server (connecting, and each call; default 10)."""
    u = urlsplit(uri)
    coll = u.path.strip("/")
    if u.scheme != "milvus" or not u.hostname or not coll or "/" in coll:
        raise ConfigError(f"a Milvus index is named milvus://HOST:PORT/COLLECTION; got {uri!r}")
    if u.username or u.password:
        raise ConfigError(f"put no credentials in the URI {u.hostname}:{u.port}/{coll}: pass --milvus-token or set ${TOKEN_ENV}")
    port = u.port or 19530
    opts = {k: v[-1] for k, v in parse_qs(u.query).items()}
    return f"http://{u.hostname}:{port}", coll, opts


def auto_index_type(n: int) -> str:
    """The default index for ``n`` codes: exact BIN_FLAT while a scan is cheap, BIN_IVF_FLAT beyond."""
    return "BIN_FLAT" if n < AUTO_IVF_FROM else "BIN_IVF_FLAT"


def _and(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts if p)


def _pymilvus() -> Any:
    import warnings

    from deephash.optional import require

    with warnings.catch_warnings():  # pymilvus 2.3 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        return require("pymilvus", "MilvusIndex (see docs/scale-out.md)", error=BackendUnavailableError)


@register_backend("milvus")
class MilvusIndex:
    """An index of packed ``n_bits`` codes kept in the Milvus collection ``collection`` at ``uri``.

    ``search(codes, k) -> (D int32 (nq, k), ids int64 (nq, k))``: like :class:`HashIndex`,
    padded with ``n_bits + 1`` / ``-1`` when fewer than ``k`` codes are stored, ties inside the
    returned list ordered by id. BIN_FLAT is exact (distances equal deephash's exact search;
    which members of a tie straddling the k-th place come back is the server's choice);
    BIN_IVF_FLAT scans the ``nprobe`` nearest of ``nlist`` clusters per segment.

    The connection is opened, and the collection created if missing, on first use. It holds Hamming
    codes only: quantisation codes (a :class:`~deephash.index.PQIndex`'s) are refused.
    """

    #: what the stored codes are (recorded in the collection's description) and how they rank
    code_kind: ClassVar[str] = "hamming"
    metric: ClassVar[str] = "hamming"

    def __init__(
        self,
        uri: str,
        collection: str,
        n_bits: int,
        *,
        index_type: str = "BIN_FLAT",
        nlist: int = 1024,
        nprobe: int = 16,
        token: str = "",
        db_name: str = "",
        metadata: bool = True,
        consistency_level: str = "Session",
        shards_num: int | None = None,
        timeout: float = 30.0,
        max_path_length: int = 1024,
        meta: dict[str, Any] | None = None,
        class_names: Sequence[str] = (),
        feature_dim: int | None = None,
        labels: str | None = "single",
    ) -> None:
        self.uri = str(uri)
        self.collection = str(collection)
        self.n_bits = check_n_bits(n_bits)
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
        for name, v, hi in (("nlist", nlist, 65536), ("nprobe", nprobe, 65536)):
            if not isinstance(v, (int, np.integer)) or not 1 <= v <= hi:
                raise ConfigError(f"{name} must be an integer between 1 and {hi}; got {v!r}")
        if consistency_level not in CONSISTENCY_LEVELS:
            raise ConfigError(f"consistency_level must be one of {', '.join(CONSISTENCY_LEVELS)}; got {consistency_level!r}")
        if not self.collection or not self.collection.replace("_", "a").isalnum() or self.collection[0].isdigit():
            raise ConfigError(f"collection must be letters, digits and '_' and not start with a digit; got {collection!r}")
        self.index_type = index_type
        self.nlist = int(nlist)
        self.nprobe = int(nprobe)
        self.token = token
        self.db_name = db_name
        self.metadata = bool(metadata)
        self.consistency_level = consistency_level
        self.shards_num = shards_num
        self.timeout = float(timeout)
        self.max_path_length = int(max_path_length)
        self._client_: Any = None
        self._orm: Any = None
        self._next_id: int | None = None
        self._strong_next_read = False
        # what the collection records about itself (its description; read back on open)
        self.meta: dict[str, Any] = dict(meta or {})
        self.class_names: list[str] = list(class_names)
        self.feature_dim = None if feature_dim is None else int(feature_dim)
        if labels not in (None, "single", "multi"):
            raise ConfigError(f"labels must be 'single', 'multi' or None; got {labels!r}")
        self.label_kind = labels if self.metadata else None
        self._fcoll: Any = None  # the features collection (ORM), once opened
        self._must_exist = False  # opened by URI (open_uri): the collection must exist already
        self._by_uri = False  # made by open_uri / create_uri: messages name the milvus:// URI
        self._auto_index = False  # create_uri(index_type="auto"): finish() picks the index by size

    def __repr__(self) -> str:
        return (f"MilvusIndex(uri={self.uri!r}, collection={self.collection!r}, n_bits={self.n_bits}, "
                f"index_type={self.index_type!r}, nlist={self.nlist}, nprobe={self.nprobe})")

    # ------------------------------------------------------------------ connection and schema
    @property
    def _client(self) -> Any:
        return self._open()

    def _open(self, *, check_index: bool = True) -> Any:
        """Connect and create/check the collection once; a failed check leaves the index unopened."""
        if self._client_ is None:
            c = self._connect()
            self._client_ = c
            try:
                self._ensure_collection(check_index=check_index)
            except BaseException:
                self._client_ = None
                c.close()
                raise
        return self._client_

    def _connect(self) -> Any:
        pm = _pymilvus()
        kwargs: dict[str, Any] = {"uri": self.uri, "timeout": self.timeout}
        if self.token:
            kwargs["token"] = self.token
        if self.db_name:
            kwargs["db_name"] = self.db_name
        try:
            return pm.MilvusClient(**kwargs)
        except Exception as e:  # grpc's FutureTimeoutError, MilvusException, ConnectionError...
            where = "the milvus-lite file" if not self.uri.startswith(("http://", "https://", "tcp://", "unix:")) else "the Milvus server"
            raise BackendUnavailableError(
                f"cannot connect to {where} at {self.location if self._by_uri else repr(self.uri)} within {self.timeout:g} s "
                f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); check that it is running and reachable, and the token"
            ) from None

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a client call, turning pymilvus's exceptions into deephash errors that say what failed."""
        pm = _pymilvus()
        import grpc

        try:
            # an int: pymilvus's retry loop bounds its retries by the timeout only when it is an int (a
            # float retries on for minutes while the server is away)
            return fn(*args, timeout=max(1, math.ceil(self.timeout)), **kwargs)
        except (grpc.RpcError, ConnectionError, TimeoutError) as e:  # the server went away
            self._drop_connection()
            raise BackendUnavailableError(f"Milvus at {self.location} did not answer ({what}): "
                                          f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
        except pm.exceptions.MilvusException as e:
            code = getattr(e, "code", None)
            msg = " ".join(str(getattr(e, "message", e)).split())
            unavailable = code in (1, 2) or "unavailable" in msg.lower() or "connect" in msg.lower()
            if unavailable:
                self._drop_connection()
            cls = BackendUnavailableError if unavailable else BackendError
            where = self.location if self._by_uri else repr(self.uri)
            raise cls(f"Milvus at {where} failed to {what} in collection {self.collection!r}: {msg} (code {code})") from None

    def _drop_connection(self) -> None:
        """Forget a connection the server stopped answering: the next call connects afresh, at once once
        the server is back (a gRPC channel left to itself waits out its reconnect back-off, up to minutes)."""
        c, self._client_ = self._client_, None
        self._orm = None
        self._fcoll = None
        if c is not None:
            try:
                c.close()
            except Exception:  # closing a dead channel may complain; there is nothing left to release
                pass

    def _schema(self) -> Any:
        pm = _pymilvus()
        s = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=self._description())
        s.add_field("id", pm.DataType.INT64, is_primary=True)
        s.add_field("code", pm.DataType.BINARY_VECTOR, dim=self.n_bits)
        if self.metadata:
            s.add_field("path", pm.DataType.VARCHAR, max_length=self.max_path_length)
            s.add_field("label", pm.DataType.JSON)
        return s

    def _index_params(self) -> Any:
        pm = _pymilvus()
        ip = pm.MilvusClient.prepare_index_params()
        params = {"nlist": self.nlist} if self.index_type == "BIN_IVF_FLAT" else {}
        ip.add_index(field_name="code", index_type=self.index_type, metric_type="HAMMING", params=params)
        return ip

    def _description(self) -> str:
        """What the collection records about itself (JSON in its description; see the module docstring)."""
        return json.dumps({"deephash": 1, "n_bits": self.n_bits, "code_kind": self.code_kind,
                           "feature_dim": self.feature_dim, "labels": self.label_kind, "meta": self.meta},
                          separators=(",", ":"), default=str)

    def _read_description(self, desc: dict[str, Any]) -> None:
        """Take meta, feature dim, label kind and class names from an existing collection."""
        try:
            d = json.loads(desc.get("description") or "")
        except json.JSONDecodeError:
            d = None
        if isinstance(d, dict) and d.get("deephash") == 1:
            self.meta = dict(d.get("meta") or {})
            self.feature_dim = d.get("feature_dim")
            self.label_kind = d.get("labels") if self.metadata else None
        props = desc.get("properties") or {}
        if "deephash.class_names" in props:
            self.class_names = list(json.loads(props["deephash.class_names"]))

    def _write_class_names(self) -> None:
        pm = _pymilvus()
        coll = pm.Collection(self.collection, using=self._client_._using)
        self._call("record the class names", coll.set_properties, {"deephash.class_names": json.dumps(self.class_names)})

    def _ensure_collection(self, *, check_index: bool = True) -> None:
        c = self._client_
        if not self._call("look up the collection", c.has_collection, self.collection):
            if self._must_exist:
                raise DataError(f"{self.location}: no such collection; build it with "
                                f"deephash index ARCHIVE --model MODEL --out {self.location}")
            if self.feature_dim:
                self._create_features_collection()
            kwargs: dict[str, Any] = {"schema": self._schema(), "index_params": self._index_params(),
                                      "consistency_level": self.consistency_level}
            if self.shards_num:
                kwargs["num_shards"] = int(self.shards_num)
            self._call("create the collection", c.create_collection, self.collection, **kwargs)
            if self.class_names:
                self._write_class_names()
            return
        desc = self._call("describe the collection", c.describe_collection, self.collection)
        self._read_description(desc)
        fields = {f["name"]: f for f in desc["fields"]}
        code = fields.get("code")
        if code is None or "id" not in fields:
            raise ConfigError(f"collection {self.collection!r} at {self.uri} was not made by deephash (no 'id'/'code' fields); "
                              f"choose another collection name")
        dim = int(code.get("params", {}).get("dim", 0))
        if dim != self.n_bits:
            raise ConfigError(f"collection {self.collection!r} holds {dim}-bit codes; this index was asked for {self.n_bits}-bit codes")
        has_meta = "path" in fields
        if has_meta != self.metadata:
            raise ConfigError(f"collection {self.collection!r} was created with metadata={has_meta}; pass metadata={has_meta}")
        idx = self._describe_index()
        if idx is None:
            self._create_index()
        elif not check_index:
            return
        elif self._must_exist:  # opened by URI: whatever index the collection has
            self.index_type = idx.get("index_type", self.index_type)
            params = idx.get("params") if isinstance(idx.get("params"), dict) else idx
            self.nlist = int(params.get("nlist", self.nlist))
        elif idx.get("index_type") != self.index_type:
            raise ConfigError(f"collection {self.collection!r} is indexed with {idx.get('index_type')}; pass "
                              f"index_type={idx.get('index_type')!r} or call set_index({self.index_type!r})")
        self._load()

    def _describe_index(self) -> dict | None:
        c = self._client_
        names = self._call("list indexes", c.list_indexes, self.collection)
        if not names:
            return None
        return self._call("describe the index", c.describe_index, self.collection, names[0])

    def _create_index(self) -> None:
        self._call("create the index", self._client_.create_index, self.collection, self._index_params())

    def _load(self) -> None:
        self._call("load the collection", self._client_.load_collection, self.collection)

    def set_index(self, index_type: str, *, nlist: int | None = None) -> None:
        """Replace the collection's index (e.g. BIN_FLAT -> BIN_IVF_FLAT) without re-inserting the codes."""
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"index_type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
        c = self._open(check_index=False)
        self.index_type = index_type
        if nlist is not None:
            self.nlist = int(nlist)
        self._call("release the collection", c.release_collection, self.collection)
        for name in self._call("list indexes", c.list_indexes, self.collection):
            self._call("drop the index", c.drop_index, self.collection, name)
        self._create_index()
        self._wait_indexed()
        self._load()
        self._wait_served(600.0)

    def flush(self, *, wait_s: float = 600.0) -> None:
        """Seal what was inserted, wait until it is indexed and the query nodes serve the sealed segments.

        Milvus searches freshly inserted rows in growing segments (brute force, slower than the
        index) until they are sealed, indexed and handed off to the query nodes; call this after a
        bulk load, before measuring or relying on the index's speed. Waits at most ``wait_s``.
        """
        pm = _pymilvus()
        c = self._client
        for name in [self.collection] + ([self.features_collection] if self.feature_dim else []):
            if hasattr(c, "flush"):  # pymilvus >= 2.4
                self._call("flush", c.flush, name)
            else:  # pymilvus 2.3's MilvusClient: the ORM on the client's own connection
                self._call("flush", pm.Collection(name, using=c._using).flush)
        if self._wait_indexed():
            self._wait_served(wait_s)

    def _utility(self) -> tuple[Any, Any]:
        """pymilvus's ORM ``utility`` and the client's connection alias, or (None, None) where not usable."""
        pm = _pymilvus()
        using = getattr(self._client, "_using", None)
        utility = getattr(pm, "utility", None)
        if using is None or utility is None or not hasattr(utility, "get_query_segment_info"):
            return None, None
        return utility, using

    def _wait_indexed(self) -> bool:
        """Wait until the index is built on every sealed segment; False where the server cannot tell."""
        utility, using = self._utility()
        if utility is None:
            return False
        try:
            self._call("wait for the index", utility.wait_for_index_building_complete, self.collection,
                       index_name="code", using=using)
        except BackendError:  # milvus-lite builds synchronously and may not answer this call
            return False
        return True

    def _wait_served(self, wait_s: float) -> None:
        """Wait until the query nodes serve sealed segments holding every row (the handoff)."""
        utility, using = self._utility()
        if utility is None:
            return
        n = len(self)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                segs = utility.get_query_segment_info(self.collection, using=using)
            except Exception:  # not answered (milvus-lite): nothing more to wait for
                return
            if sum(int(s.num_rows) for s in segs) >= n:
                return
            time.sleep(0.5)
        raise BackendError(f"Milvus at {self.uri!r} did not serve the sealed segments of {self.collection!r} "
                           f"within {wait_s:g} s after flush; searches still work, on growing segments")

    def drop(self) -> None:
        """Delete the collection and everything in it from the server."""
        c = self._client
        if self._call("look up the collection", c.has_collection, self.features_collection):
            self._call("drop the features collection", c.drop_collection, self.features_collection)
        self._call("drop the collection", c.drop_collection, self.collection)
        self._fcoll = None
        self._client_ = None
        self._orm = None
        self._next_id = None

    def close(self) -> None:
        if self._client_ is not None:
            self._client_.close()
            self._client_ = None

    # ------------------------------------------------------------------ size and lookup
    def _read_level(self) -> str:
        """The consistency level of the next read.

        "Session" (the default) lets this client read its own inserts without waiting; Milvus 2.3
        does not count deletes in a session, so the first read after :meth:`remove` is "Strong"
        (it waits for the server's time tick, about 200 ms).
        """
        if self._strong_next_read:
            self._strong_next_read = False
            return "Strong"
        return self.consistency_level

    def __len__(self) -> int:
        r = self._call("count the codes", self._client.query, self.collection, filter="",
                       output_fields=["count(*)"], consistency_level=self._read_level())
        return int(r[0]["count(*)"]) if r else 0

    def _existing(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` the collection holds."""
        found: list[int] = []
        for s in range(0, len(ids), 8192):
            chunk = ids[s : s + 8192]
            r = self._call("look up ids", self._client.query, self.collection,
                           filter=f"id in [{','.join(str(int(i)) for i in chunk)}]", output_fields=["id"],
                           consistency_level=self._read_level())
            found.extend(int(row["id"]) for row in r)
        return np.asarray(sorted(found), dtype=np.int64)

    def _exists_at_least(self, x: int) -> bool:
        r = self._call("look up ids", self._client.query, self.collection, filter=f"id >= {x}",
                       output_fields=["id"], limit=1, consistency_level=self._read_level())
        return bool(r)

    def _max_id(self) -> int:
        """Largest stored id (-1 when empty), by bisection on ``id >= x`` (Milvus has no max())."""
        if not self._exists_at_least(0):
            return -1
        lo, hi = 0, 1  # invariant: some id >= lo; none >= hi once hi is found
        while self._exists_at_least(hi):
            lo, hi = hi, hi * 2
            if hi >= 2**62:
                hi = 2**63 - 1
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._exists_at_least(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def fetch(self, ids: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """``[{"id", "path", "label"}, ...]`` for ``ids`` in their order; unknown ids raise :class:`DataError`."""
        if not self.metadata:
            raise ConfigError(f"collection {self.collection!r} stores no paths or labels (metadata=False)")
        want = np.asarray(ids, dtype=np.int64).ravel()
        rows: dict[int, dict[str, Any]] = {}
        for s in range(0, len(want), 8192):
            chunk = want[s : s + 8192]
            r = self._call("fetch rows", self._client.query, self.collection,
                           filter=f"id in [{','.join(str(int(i)) for i in chunk)}]", output_fields=["id", "path", "label"],
                           consistency_level=self._read_level())
            for row in r:
                lab = row.get("label") or {}
                if isinstance(lab, str):
                    lab = json.loads(lab)
                rows[int(row["id"])] = {"id": int(row["id"]), "path": row.get("path", ""), "label": lab.get("y")}
        missing = [int(i) for i in want if int(i) not in rows]
        if missing:
            raise DataError(f"unknown image id(s) {missing[:10]}; collection {self.collection!r} does not hold them")
        return [rows[int(i)] for i in want]

    # ------------------------------------------------------------------ mutation
    def add(
        self,
        codes: np.ndarray,
        ids: Sequence[int] | np.ndarray | None = None,
        labels: np.ndarray | None = None,
        paths: Sequence[str] | None = None,
        *,
        features: np.ndarray | None = None,
        batch_bytes: int = 8 << 20,
    ) -> np.ndarray:
        """Insert codes (and their paths/labels); returns their ids.

        Without ``ids``, ids continue from the largest stored one (found on the server once, then
        counted here): with several writers at once, pass ``ids`` explicitly.
        """
        codes = check_codes(codes, self.n_bits)
        n = len(codes)
        if ids is None:
            if self._next_id is None:
                self._next_id = self._max_id() + 1
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            new_ids = np.asarray(ids, dtype=np.int64).ravel()
            if len(new_ids) != n:
                raise ConfigError(f"got {n} codes but {len(new_ids)} ids")
            if len(np.unique(new_ids)) != n:
                raise ConfigError("ids must be unique and not already in the index")
            if n and new_ids.min() < 0:
                raise ConfigError("ids must be non-negative (-1 marks padding in results)")
        if n == 0:
            return new_ids
        if not self.metadata and (paths is not None or labels is not None):
            raise ConfigError(f"collection {self.collection!r} stores no paths or labels (metadata=False); pass only codes and ids")
        path_list = [""] * n if paths is None else [str(p) for p in paths]
        if len(path_list) != n:
            raise ConfigError(f"got {n} codes but {len(path_list)} paths")
        too_long = [p for p in path_list if len(p.encode("utf-8")) > self.max_path_length]
        if too_long:
            raise ConfigError(f"paths are limited to {self.max_path_length} bytes (max_path_length); got one of {len(too_long[0].encode())}")
        label_list: list[Any] = [None] * n
        if labels is not None:
            lab = np.asarray(labels)
            if len(lab) != n:
                raise ConfigError(f"got {n} codes but {len(lab)} labels")
            if lab.ndim == 1:
                label_list = [int(v) for v in lab]
            elif lab.ndim == 2:
                label_list = [[int(j) for j in np.flatnonzero(row)] for row in lab]
            else:
                raise ConfigError(f"labels must be (n,) class ids or (n, n_classes) multi-hot; got shape {lab.shape}")
        if (features is None) != (not self.feature_dim):
            raise ConfigError(f"{self.location} " + (f"stores {self.feature_dim}-dim float features; pass them"
                              if self.feature_dim else "stores no float features; pass none"))
        if features is not None:
            # rounded to float16 as the local index stores them, so both backends re-rank alike
            features = np.ascontiguousarray(np.asarray(features, np.float32).astype(np.float16), dtype=np.float32)
            if features.shape != (n, self.feature_dim):
                raise ConfigError(f"features must have shape ({n}, {self.feature_dim}); got {features.shape}")
        c = self._client
        if ids is not None:
            clash = self._existing(new_ids)
            if len(clash):
                raise ConfigError(f"ids must be unique and not already in the index; {len(clash)} are, e.g. {clash[:10].tolist()}")
        row_bytes = self.n_bits // 8 + 8 + (64 + max((len(p) for p in path_list), default=0) if self.metadata else 0)
        step = max(1, int(batch_bytes) // row_bytes)
        raw = codes.tobytes()
        nb = self.n_bits // 8
        if features is not None:  # first: a code is never searchable without its features
            fstep = max(1, int(batch_bytes) // (4 * self.feature_dim + 8))
            fc = self._features_orm()
            for s in range(0, n, fstep):
                e = min(n, s + fstep)
                self._call("insert features", fc.insert, [new_ids[s:e].tolist(), features[s:e]])
        for s in range(0, n, step):
            e = min(n, s + step)
            columns: list[list[Any]] = [new_ids[s:e].tolist(), [raw[i * nb : (i + 1) * nb] for i in range(s, e)]]
            if self.metadata:
                columns += [path_list[s:e], [{} if v is None else {"y": v} for v in label_list[s:e]]]
            self._insert_columns(columns)
        if self._next_id is not None or ids is None:
            self._next_id = max(self._next_id or 0, int(new_ids.max()) + 1)
        return new_ids

    def _insert_columns(self, columns: list[list[Any]]) -> None:
        """Insert column-wise through the ORM on the client's connection.

        pymilvus 2.3's row insert (``MilvusClient.insert``) appends binary vectors with ``bytes +=``,
        quadratic in the batch (20,000 codes: 15 s); the column path joins them once. Falls back to
        rows in small batches where the ORM cannot be used.
        """
        pm = _pymilvus()
        c = self._client
        using = getattr(c, "_using", None)
        if using is not None:
            if getattr(self, "_orm", None) is None:
                try:
                    self._orm = pm.Collection(self.collection, using=using)
                except Exception:  # e.g. a client without ORM support for this URI
                    self._orm = False
            if self._orm:
                self._call("insert codes", self._orm.insert, columns)
                return
        names = ["id", "code", "path", "label"][: len(columns)]
        n = len(columns[0])
        for s in range(0, n, 1000):
            rows = [dict(zip(names, vals)) for vals in zip(*(col[s : s + 1000] for col in columns))]
            self._call("insert codes", c.insert, self.collection, rows)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete codes by id (unknown ids raise :class:`DataError`); returns how many were removed."""
        want = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        if not len(want):
            return 0
        have = self._existing(want)
        missing = np.setdiff1d(want, have)
        if len(missing):
            raise DataError(f"unknown image id(s) {missing[:10].tolist()}; collection {self.collection!r} does not hold them")
        for s in range(0, len(want), 8192):
            chunk = [int(i) for i in want[s : s + 8192]]
            self._call("delete codes", self._client.delete, self.collection, ids=chunk)
            if self.feature_dim:  # after the codes: a searchable code always has its features
                self._call("delete features", self._client.delete, self.features_collection, ids=chunk)
        self._strong_next_read = True
        return int(len(want))

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None,
               filter: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Hamming k-NN on the server: ``(D int32 (nq, k), ids int64 (nq, k))`` padded with ``n_bits + 1`` / -1.

        ``nprobe`` overrides the constructor's for BIN_IVF_FLAT; ``filter`` is a Milvus boolean
        expression on the stored fields (e.g. ``'label["y"] == 3'``).
        """
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_TOPK:
            raise ConfigError(f"k must be an integer between 1 and {MAX_TOPK} (Milvus's limit); got {k!r}")
        k = int(k)
        nq = len(queries)
        D = np.full((nq, k), self.n_bits + 1, dtype=np.int32)
        I = np.full((nq, k), -1, dtype=np.int64)
        params: dict[str, Any] = {"metric_type": "HAMMING", "params": {}}
        if self.index_type == "BIN_IVF_FLAT":
            params["params"]["nprobe"] = int(nprobe or self.nprobe)
        c = self._client
        step = max(1, min(1024, (1 << 18) // k))  # bounded request and reply sizes
        nb = self.n_bits // 8
        for s in range(0, nq, step):
            chunk = queries[s : s + step]
            raw = chunk.tobytes()
            data = [raw[i * nb : (i + 1) * nb] for i in range(len(chunk))]
            res = self._call("search", c.search, self.collection, data, filter=filter, limit=k, output_fields=[],
                             search_params=params, consistency_level=self._read_level())
            for qi, hits in enumerate(res):
                if not len(hits):
                    continue
                hid = np.fromiter((h["id"] for h in hits), dtype=np.int64, count=len(hits))
                hd = np.fromiter((h["distance"] for h in hits), dtype=np.float64, count=len(hits)).round().astype(np.int32)
                o = np.lexsort((hid, hd))  # the server leaves ties unordered: order them by id
                D[s + qi, : len(o)] = hd[o]
                I[s + qi, : len(o)] = hid[o]
        return D, I

    # ------------------------------------------------------------------ the backend interface (deephash.index.backend)
    @property
    def features_collection(self) -> str:
        return self.collection + FEATURES_SUFFIX

    @property
    def location(self) -> str:
        """``milvus://HOST:PORT/COLLECTION`` (never the token)."""
        u = urlsplit(self.uri)
        return f"milvus://{u.hostname}:{u.port}/{self.collection}" if u.hostname else f"{self.uri}#{self.collection}"

    @property
    def has_features(self) -> bool:
        self._client  # noqa: B018  (the description says)
        return bool(self.feature_dim)

    @property
    def has_labels(self) -> bool:
        self._client  # noqa: B018
        return self.label_kind is not None

    @property
    def multi_label(self) -> bool:
        self._client  # noqa: B018
        return self.label_kind == "multi"

    @classmethod
    def _from_uri(cls, uri: str, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        server, coll, q = parse_milvus_uri(uri)
        kw = dict(options)
        unknown = sorted(set(q) - {"nprobe", "timeout"})
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} in {server}/{coll}; a milvus:// URI takes nprobe and timeout")
        try:
            if "nprobe" in q:
                kw.setdefault("nprobe", int(q["nprobe"]))
            if "timeout" in q:
                kw.setdefault("timeout", float(q["timeout"]))
        except ValueError:
            raise ConfigError(f"nprobe must be an integer and timeout a number of seconds; got {q}") from None
        token = kw.pop("token", None) or os.environ.get(TOKEN_ENV, "")
        kw["token"] = token
        kw.setdefault("consistency_level", "Strong")
        kw.setdefault("timeout", 10.0)
        return server, coll, kw

    @classmethod
    def open_uri(cls, uri: str, **options: Any) -> "MilvusIndex":
        """The collection at ``milvus://HOST:PORT/COLLECTION``, which must exist; its bit length, features,
        labels, class names and model identity come from the collection itself."""
        server, coll, kw = cls._from_uri(uri, options)
        kw.pop("index_type", None)
        ix = cls(server, coll, 8, **kw)
        ix._must_exist = ix._by_uri = True
        c = ix._connect()
        ix._client_ = c
        try:
            if not ix._call("look up the collection", c.has_collection, coll):
                raise DataError(f"{ix.location}: no such collection; build it with deephash index ARCHIVE --model MODEL "
                                f"--out {ix.location}")
            desc = ix._call("describe the collection", c.describe_collection, coll)
            code = {f["name"]: f for f in desc["fields"]}.get("code")
            if code is None:
                raise ConfigError(f"collection {coll!r} at {ix.location} was not made by deephash (no 'code' field)")
            ix.n_bits = int(code.get("params", {}).get("dim", 0))
            ix.metadata = "path" in {f["name"] for f in desc["fields"]}
            ix._ensure_collection()
        except BaseException:
            ix._client_ = None
            c.close()
            raise
        return ix

    @classmethod
    def _refuse_codes_of_kind(cls, code_kind: str) -> None:
        if code_kind != cls.code_kind:
            raise ConfigError(f"Milvus holds Hamming codes only; these are {code_kind!r} codes, ranked by asymmetric "
                              "distance (use a local index file)")

    @classmethod
    def create_uri(cls, uri: str, n_bits: int, *, class_names: Sequence[str] = (), code_kind: str = "hamming",
                   meta: dict[str, Any] | None = None, feature_dim: int | None = None, labels: str | None = "single",
                   index_type: str = "auto", expected_size: int = 0, **options: Any) -> "MilvusIndex":
        """A new collection at ``milvus://HOST:PORT/COLLECTION`` (an existing one is refused: drop it or
        use ``--update``); ``index_type`` "BIN_FLAT", "BIN_IVF_FLAT" or "auto" (by ``expected_size``)."""
        cls._refuse_codes_of_kind(code_kind)
        server, coll, kw = cls._from_uri(uri, options)
        auto = index_type in ("auto", None)
        it = auto_index_type(expected_size) if auto else INDEX_CHOICES.get(index_type, index_type)
        ix = cls(server, coll, n_bits, index_type=it, meta=meta, class_names=class_names, feature_dim=feature_dim,
                 labels=labels, **kw)
        ix._by_uri = True
        ix._auto_index = auto
        c = ix._connect()
        try:
            if ix._call("look up the collection", c.has_collection, coll):
                raise ConfigError(f"{ix.location} exists already; update it with --update, or drop the collection first")
        finally:
            c.close()
        ix._client  # noqa: B018  (creates the collection(s))
        return ix

    def _create_features_collection(self) -> None:
        pm = _pymilvus()
        c = self._client_
        if self._call("look up the collection", c.has_collection, self.features_collection):
            self._call("drop a stale features collection", c.drop_collection, self.features_collection)
        s = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                          description=f"deephash float features of {self.collection}")
        s.add_field("id", pm.DataType.INT64, is_primary=True)
        s.add_field("feature", pm.DataType.FLOAT_VECTOR, dim=int(self.feature_dim))
        ip = pm.MilvusClient.prepare_index_params()
        ip.add_index(field_name="feature", index_type="FLAT", metric_type="L2", params={})
        self._call("create the features collection", c.create_collection, self.features_collection, schema=s,
                   index_params=ip, consistency_level=self.consistency_level)

    def _features_orm(self) -> Any:
        if self._fcoll is None:
            pm = _pymilvus()
            self._fcoll = pm.Collection(self.features_collection, using=self._client._using)
        return self._fcoll

    def new_ids(self, n: int) -> np.ndarray:
        """``n`` ids no other writer will take: random in ``[2**40, 2**52)``, none stored yet (the service's uploads)."""
        while True:
            ids = np.asarray([UPLOAD_ID_BASE + secrets.randbelow((1 << 52) - UPLOAD_ID_BASE) for _ in range(n)], np.int64)
            if len(np.unique(ids)) == n and not len(self._existing(ids)):
                return ids

    def class_filter(self, cls: int | None) -> str:
        """The Milvus filter expression for "labelled with class ``cls``" ("" for None)."""
        if cls is None:
            return ""
        if self.label_kind is None:
            raise ConfigError("this index stores no labels, so results cannot be filtered by label")
        c = int(cls)
        return f'json_contains(label["y"], {c})' if self.label_kind == "multi" else f'label["y"] == {c}'

    def add_class_names(self, names: Sequence[str]) -> None:
        """Append new class names (``deephash index --update`` found new classes) and record them."""
        new = [n for n in names if n not in self.class_names]
        if new:
            self.class_names.extend(new)
            self._client  # noqa: B018
            self._write_class_names()

    def search_radius(self, queries: np.ndarray, radius: int, *, filter: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
        """Every code within Hamming ``radius`` of each query, by (distance, id) (a range search on the
        server; at most MAX_TOPK per query: more is refused with a message)."""
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ConfigError(f"radius must be an integer >= 0; got {radius!r}")
        out = []
        for q in queries:
            d, ids = self._range(q, int(radius), filter)
            out.append((d, ids))
        return out

    def _search_params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": "HAMMING", "params": dict(extra or {})}
        if self.index_type == "BIN_IVF_FLAT":
            params["params"]["nprobe"] = int(self.nprobe)
        return params

    def _hits(self, res: Any) -> tuple[np.ndarray, np.ndarray]:
        hits = res[0] if len(res) else []
        hid = np.fromiter((h["id"] for h in hits), dtype=np.int64, count=len(hits))
        hd = np.fromiter((h["distance"] for h in hits), dtype=np.float64, count=len(hits)).round().astype(np.int32)
        o = np.lexsort((hid, hd))
        return hd[o], hid[o]

    def _range(self, code: np.ndarray, radius: int, filter: str, level: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        # Milvus's range search keeps range_filter <= distance < radius: radius + 1 makes it inclusive
        res = self._call("search within a radius", self._client.search, self.collection, [code.tobytes()], filter=filter,
                         limit=MAX_TOPK, output_fields=[], consistency_level=level or self._read_level(),
                         search_params=self._search_params({"radius": radius + 1, "range_filter": -1}))
        d, ids = self._hits(res)
        if len(ids) >= MAX_TOPK:
            raise ConfigError(f"more than {MAX_TOPK} images lie within Hamming distance {radius} of the query and Milvus "
                              f"returns at most {MAX_TOPK} per query: use a smaller radius")
        return d, ids

    def _nearest(self, code: np.ndarray, k: int, filter: str, level: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        if k > MAX_TOPK:
            raise ConfigError(f"Milvus returns at most {MAX_TOPK} neighbours per query; {k} were needed")
        res = self._call("search", self._client.search, self.collection, [code.tobytes()], filter=filter, limit=int(k),
                         output_fields=[], search_params=self._search_params(), consistency_level=level or self._read_level())
        return self._hits(res)

    def _count(self, filter: str, level: str | None = None) -> int:
        r = self._call("count the codes", self._client.query, self.collection, filter=filter,
                       output_fields=["count(*)"], consistency_level=level or self._read_level())
        return int(r[0]["count(*)"]) if r else 0

    def _rows(self, ids: np.ndarray, fields: list[str], collection: str | None = None,
              level: str | None = None) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        for s in range(0, len(ids), 8192):
            chunk = ids[s : s + 8192]
            r = self._call("fetch rows", self._client.query, collection or self.collection,
                           filter=f"id in [{','.join(str(int(i)) for i in chunk)}]", output_fields=fields,
                           consistency_level=level or self._read_level())
            rows.update((int(row["id"]), row) for row in r)
        return rows

    def id_paths(self) -> tuple[np.ndarray, list[str]]:
        """Every stored id with its path (read in batches)."""
        pm = _pymilvus()
        it = self._call("list the paths", pm.Collection(self.collection, using=self._client._using).query_iterator,
                        batch_size=8192, expr="id >= 0", output_fields=["id", "path"] if self.metadata else ["id"])
        ids: list[int] = []
        paths: list[str] = []
        try:
            while True:
                rows = self._call("list the paths", lambda timeout=None: it.next())
                if not rows:
                    break
                ids += [int(r["id"]) for r in rows]
                paths += [r.get("path", "") for r in rows]
        finally:
            it.close()
        return np.asarray(ids, np.int64), paths

    def ids_of_paths(self, paths: Sequence[str]) -> dict[str, int]:
        """``path -> id`` for those of ``paths`` the collection holds (a ``path in [...]`` query)."""
        if not self.metadata:
            return {}
        out: dict[str, int] = {}
        paths = list(paths)
        for s in range(0, len(paths), 1024):
            expr = "path in [" + ",".join(json.dumps(p) for p in paths[s : s + 1024]) + "]"
            for r in self._call("look up paths", self._client.query, self.collection, filter=expr,
                                output_fields=["id", "path"], consistency_level=self._read_level()):
                out[r["path"]] = int(r["id"])
        return out

    def default_uploads_dir(self) -> "os.PathLike[str]":
        """Where the service keeps uploaded images unless told (``--uploads``): ``./COLLECTION.uploads``.
        Replicas on several machines must share one folder (a shared volume) to serve each other's uploads."""
        from pathlib import Path

        return (Path.cwd() / f"{self.collection}.uploads").resolve()

    def snapshot(self) -> "MilvusView":
        """The view one query reads (:class:`MilvusView`: keys are ids; every read is at this index's
        consistency level, Strong when opened by URI)."""
        self._client  # noqa: B018
        return MilvusView(self)

    def persist(self, added: Sequence[int] | np.ndarray = (), removed: Sequence[int] | np.ndarray = (), *,
                fold_ratio: float = 0.25, fold_min_bytes: int = 0) -> bool:
        """Nothing left to do: Milvus acknowledges an insert or delete once its log holds it (durable).
        Returns False (no file is rewritten)."""
        return False

    def finish(self) -> None:
        """End a build. With ``index_type="auto"`` a collection of AUTO_IVF_FROM codes or more moves to
        BIN_IVF_FLAT. An IVF index, or FLUSH_FROM codes or more, are sealed and waited for until
        indexed and served (:meth:`flush`); below that the rows are searched in growing segments —
        a brute-force scan, which is what BIN_FLAT does anyway — and sealing would cost more than it
        saves (the inserts are durable in the server's log either way)."""
        n = len(self)
        if self._auto_index and auto_index_type(n) != self.index_type:
            self.flush()
            self.set_index(auto_index_type(n), nlist=self.nlist)
        elif self.index_type != "BIN_FLAT" or n >= FLUSH_FROM:
            self.flush()

    def reopen(self) -> "MilvusIndex":
        """This index: it holds nothing in memory that a failed write could have left behind."""
        return self

    def stats(self) -> dict[str, Any]:
        """Backend facts for ``/api/stats``: per-class counts, uploads, index type, collection."""
        view = self.snapshot()  # one Strong read, the rest without waiting again
        per_class = None
        if self.label_kind == "single" and self.class_names:
            per_class = {n: view.count(i) for i, n in enumerate(self.class_names)}
        uploaded = self._count(f'path like "{UPLOAD_PATH_PREFIX}%"', view._level()) if self.metadata else 0
        return {"backend": "milvus", "per_class": per_class, "uploaded": uploaded, "searcher": self.index_type,
                "index_file": self.location, "journal_bytes": 0, "consistency_level": self.consistency_level}

    # ------------------------------------------------------------------ from a local index
    @classmethod
    def from_hash_index(cls, index: Any, uri: str, collection: str, *, flush: bool = True,
                        **kwargs: Any) -> "MilvusIndex":
        """Push a local :class:`~deephash.index.HashIndex` (codes, ids, paths, labels) into a Milvus collection."""
        from deephash.index.hash_index import HashIndex

        if not isinstance(index, HashIndex):
            raise ConfigError(f"from_hash_index takes a HashIndex; got {type(index).__name__}")
        cls._refuse_codes_of_kind(index.code_kind)
        out = cls(uri, collection, index.n_bits, **kwargs)
        meta = out.metadata
        out.add(index.codes, ids=index.ids,
                labels=index.labels if meta else None,
                paths=index.paths if meta and any(index.paths) else None)
        if flush:
            out.flush()
        return out


class MilvusView:
    """The view of :mod:`deephash.index.backend` over a :class:`MilvusIndex`: keys are image ids, the
    label filter a Milvus filter expression, features read from the features collection."""

    metric: ClassVar[str] = "hamming"

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index
        self._reads = 0
        self.n_bits = index.n_bits
        self.class_names = list(index.class_names)
        self.has_features = bool(index.feature_dim)
        self.has_labels = index.label_kind is not None
        self.feature_dim = index.feature_dim

    def _level(self) -> str:
        """The consistency level of this view's next read: the index's own for the first read of a view
        (Strong when opened by URI: it waits for the server's clock to pass every acknowledged write,
        one time tick, ~200 ms by default); the view's further reads then see at least as much without
        waiting again ("Eventually" on the query node that already caught up)."""
        self._reads += 1
        lvl = self.index._read_level()
        return "Eventually" if self._reads > 1 and lvl == "Strong" else lvl

    def __len__(self) -> int:
        return self.index._count("", self._level())

    def count(self, cls: int | None = None) -> int:
        return self.index._count(self.index.class_filter(cls), self._level())

    def has_id(self, image_id: int, cls: int | None = None) -> bool:
        r = self.index._call("look up an id", self.index._client.query, self.index.collection,
                             filter=_and(f"id == {int(image_id)}", self.index.class_filter(cls)), output_fields=["id"],
                             limit=1, consistency_level=self._level())
        return bool(r)

    def key_of(self, image_id: int) -> int:
        if not self.has_id(image_id):
            raise DataError(f"unknown image id {image_id}; {self.index.location} does not hold it")
        return int(image_id)

    def nearest(self, code: np.ndarray, k: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.index._nearest(np.asarray(code, np.uint8).reshape(-1), int(k), self.index.class_filter(cls), self._level())

    def within(self, code: np.ndarray, radius: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.index._range(np.asarray(code, np.uint8).reshape(-1), int(radius), self.index.class_filter(cls),
                                 self._level())

    def ids_of(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(keys, np.int64)

    def _fetch(self, keys: np.ndarray, fields: list[str], collection: str | None = None) -> list[dict[str, Any]]:
        keys = np.asarray(keys, np.int64)
        rows = self.index._rows(keys, fields, collection, self._level())
        missing = [int(i) for i in keys if int(i) not in rows]
        if missing:
            raise DataError(f"unknown image id(s) {missing[:10]}; {self.index.location} does not hold them "
                            "(removed a moment ago?)")
        return [rows[int(i)] for i in keys]

    def codes_of(self, keys: np.ndarray) -> np.ndarray:
        rows = self._fetch(keys, ["code"])
        raw = b"".join((r["code"][0] if isinstance(r["code"], list) else r["code"]) for r in rows)
        return np.frombuffer(raw, np.uint8).reshape(len(rows), self.n_bits // 8).copy()

    def features_of(self, keys: np.ndarray) -> np.ndarray:
        if not self.has_features:
            raise ConfigError("this index stores no float features")
        rows = self._fetch(keys, ["feature"], self.index.features_collection)
        if not rows:
            return np.zeros((0, self.feature_dim), np.float32)
        return np.asarray([r["feature"] for r in rows], np.float32)

    def records_of(self, keys: np.ndarray) -> tuple[list[str], list[Any]]:
        if not self.index.metadata:
            return [""] * len(keys), [None] * len(keys)
        rows = self._fetch(keys, ["path", "label"])
        labels = []
        for r in rows:
            lab = r.get("label") or {}
            if isinstance(lab, str):
                lab = json.loads(lab)
            labels.append(lab.get("y") if self.has_labels else None)
        return [r.get("path", "") for r in rows], labels

    def page(self, offset: int, limit: int, step: int = 1) -> np.ndarray:
        """One page of browsing: ids in the server's order (Milvus 2.3 cannot sort a query), sorted within
        the page; ``offset + limit x step`` is capped at MAX_TOPK (a server limit)."""
        offset, want = int(offset), int(limit) * int(step)
        want = min(want, MAX_TOPK - offset)
        if want <= 0:
            return np.zeros(0, np.int64)
        r = self.index._call("list images", self.index._client.query, self.index.collection, filter="id >= 0",
                             output_fields=["id"], limit=want, offset=offset, consistency_level=self._level())
        return np.sort(np.asarray([int(x["id"]) for x in r], np.int64))[:: int(step)][: int(limit)]
