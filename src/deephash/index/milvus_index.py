"""MilvusIndex: packed binary codes in a Milvus collection, searched by Hamming distance on the server.

The same code talks to a standalone server, a cluster (``uri="http://host:19530"``, optional
``token``) and milvus-lite (``uri="/path/file.db"``; BIN_FLAT only). Codes travel as they are
packed by :func:`deephash.index.codes.pack_bits`: Milvus's ``BINARY_VECTOR`` of ``dim`` bits is
``dim / 8`` bytes and its HAMMING metric is ``popcount(a XOR b)`` over those bytes, so the
order of bits inside a byte does not change any distance as long as queries and database are
packed alike (``tests/test_milvus_index.py`` checks every distance against
:func:`~deephash.index.codes.hamming_matrix`).

Collection schema: ``id`` INT64 primary key (the image id, chosen by deephash, not auto),
``code`` BINARY_VECTOR(n_bits), and unless ``metadata=False``: ``path`` VARCHAR and ``label``
JSON (``{"y": int}`` or ``{"y": [class, ...]}`` for multi-label).

``pymilvus`` is an optional dependency: ``pip install 'deephash[milvus]'``.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

import numpy as np

from deephash.errors import BackendError, BackendUnavailableError, ConfigError, DataError
from deephash.index.codes import check_codes, check_n_bits

INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
MAX_TOPK = 16384  # Milvus's limit on k (quota.limits.topK)


def _pymilvus() -> Any:
    import warnings

    from deephash.optional import require

    with warnings.catch_warnings():  # pymilvus 2.3 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        return require("pymilvus", "MilvusIndex (see docs/scale-out.md)", error=BackendUnavailableError)


class MilvusIndex:
    """An index of packed ``n_bits`` codes kept in the Milvus collection ``collection`` at ``uri``.

    ``search(codes, k) -> (D int32 (nq, k), ids int64 (nq, k))``: like :class:`HashIndex`,
    padded with ``n_bits + 1`` / ``-1`` when fewer than ``k`` codes are stored, ties inside the
    returned list ordered by id. BIN_FLAT is exact (distances equal deephash's exact search;
    which members of a tie straddling the k-th place come back is the server's choice);
    BIN_IVF_FLAT scans the ``nprobe`` nearest of ``nlist`` clusters per segment.

    The connection is opened, and the collection created if missing, on first use.
    """

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
                f"cannot connect to {where} at {self.uri!r} within {self.timeout:g} s "
                f"({type(e).__name__}: {str(e)[:300]}); check that it is running and reachable, and the token"
            ) from None

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a client call, turning pymilvus's exceptions into deephash errors that say what failed."""
        pm = _pymilvus()
        try:
            return fn(*args, timeout=self.timeout, **kwargs)
        except pm.exceptions.MilvusException as e:
            code = getattr(e, "code", None)
            msg = getattr(e, "message", str(e))
            unavailable = code in (1, 2) or "unavailable" in str(msg).lower() or "connect" in str(msg).lower()
            cls = BackendUnavailableError if unavailable else BackendError
            raise cls(f"Milvus at {self.uri!r} failed to {what} in collection {self.collection!r}: {msg} (code {code})") from None

    def _schema(self) -> Any:
        pm = _pymilvus()
        s = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                          description=f"deephash {self.n_bits}-bit codes")
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

    def _ensure_collection(self, *, check_index: bool = True) -> None:
        c = self._client_
        if not self._call("look up the collection", c.has_collection, self.collection):
            kwargs: dict[str, Any] = {"schema": self._schema(), "index_params": self._index_params(),
                                      "consistency_level": self.consistency_level}
            if self.shards_num:
                kwargs["num_shards"] = int(self.shards_num)
            self._call("create the collection", c.create_collection, self.collection, **kwargs)
            return
        desc = self._call("describe the collection", c.describe_collection, self.collection)
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
        if hasattr(c, "flush"):  # pymilvus >= 2.4
            self._call("flush", c.flush, self.collection)
        else:  # pymilvus 2.3's MilvusClient: the ORM on the client's own connection
            self._call("flush", pm.Collection(self.collection, using=c._using).flush)
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
        self._call("drop the collection", c.drop_collection, self.collection)
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
        c = self._client
        if ids is not None:
            clash = self._existing(new_ids)
            if len(clash):
                raise ConfigError(f"ids must be unique and not already in the index; {len(clash)} are, e.g. {clash[:10].tolist()}")
        row_bytes = self.n_bits // 8 + 8 + (64 + max((len(p) for p in path_list), default=0) if self.metadata else 0)
        step = max(1, int(batch_bytes) // row_bytes)
        raw = codes.tobytes()
        nb = self.n_bits // 8
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
            self._call("delete codes", self._client.delete, self.collection, ids=[int(i) for i in want[s : s + 8192]])
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

    # ------------------------------------------------------------------ from a local index
    @classmethod
    def from_hash_index(cls, index: Any, uri: str, collection: str, *, flush: bool = True,
                        **kwargs: Any) -> "MilvusIndex":
        """Push a local :class:`~deephash.index.HashIndex` (codes, ids, paths, labels) into a Milvus collection."""
        from deephash.index.hash_index import HashIndex

        if not isinstance(index, HashIndex):
            raise ConfigError(f"from_hash_index takes a HashIndex; got {type(index).__name__}")
        out = cls(uri, collection, index.n_bits, **kwargs)
        meta = out.metadata
        out.add(index.codes, ids=index.ids,
                labels=index.labels if meta else None,
                paths=index.paths if meta and any(index.paths) else None)
        if flush:
            out.flush()
        return out
