"""FAISS's sub-linear structures (IVF, HNSW, multi-index hashing) as index backends.

Selected by a URI, the same string for the CLI (``deephash index --out``, ``search``, ``serve``,
``index --update``), the jobs API and the service::

    faiss-ivf:archive.dhi?nlist=1024&nprobe=8      IndexBinaryIVF   build: nlist (default: auto)  search: nprobe (8)
    faiss-hnsw:archive.dhi?M=16&ef_search=64       IndexBinaryHNSW  build: M (16), ef_construction (40)  search: ef_search (64)
    faiss-mih:archive.dhi?nflip=1                  IndexBinaryMultiHash  build: nhash (bits/16), b  search: nflip (1)

The schemes come from the registry of :mod:`deephash.index.faiss_indexes` (every ``selectable``
structure registers ``faiss-<name>`` in :data:`~deephash.index.backend.INDEX_BACKENDS`).

**The local index file stays the source of truth.** A ``faiss-*`` URI opens the ordinary
:class:`~deephash.index.HashIndex` file (codes, ids, paths, labels, features, journal, the model's
identity); the FAISS structure is a derived search structure inside it:

- its name and parameters are in the file's header (``"search": {"name": "ivf", "nlist": 64,
  "nprobe": 8}``), so a plain path (``deephash search archive.dhi``) opens it the way it was built;
- the structure itself is stored in the file (``faiss.serialize_index_binary``, the ``ann`` array,
  with ``ann_rows``: which row each FAISS label stands for), because building it again at every
  load costs what FAISS users train once: ``deephash bench faiss-upkeep`` measured IVF's build at
  673 s for 10^6 codes (nlist 4,096) against 0.44 s to load the file that stores it, on a loaded
  machine (README, "Search"; docs/results/faiss-backend-upkeep/);
- it is built when the index is written (``finish``, ``save``) or first searched, and kept in
  step with ``add`` / ``remove`` and with the journal's records on load: added codes go into the
  structure (IVF assigns them to its trained lists; HNSW links them in); removed ones are taken out
  by FAISS where it can (IVF's ``remove_ids``: 0.13 s for 1,000 of 10^6 codes, against 729 s to
  build the structure again) and masked otherwise (HNSW and the multi-index have no
  ``remove_ids``; rebuilding the HNSW graph costs what building it does), then dropped from the
  structure when the file is next rewritten, once the masked codes pass a quarter of it.

Opening with a URI whose parameters differ from the header's: other *search* parameters
(``nprobe``, ``ef_search``, ``nflip``) apply to that session; another structure or other *build*
parameters build a new structure, and the file records it the next time it is written (``deephash
index --update --out faiss-hnsw:archive.dhi`` turns an IVF file into an HNSW one).

**Approximate answers.** These structures may miss neighbours (IVF scans ``nprobe`` of ``nlist``
lists; HNSW walks a graph; the multi-index finds a code for sure only within ``nhash * (nflip + 1)
- 1`` bits): ``stats()["search"]`` and every answer's ``"search"`` say ``"exact": false`` with the
parameters. A label filter scans that class's codes exactly, as the local index does; radius
queries use FAISS's range search (IVF, multi-index) or k-NN searches of growing k (HNSW), so they
are approximate too. With ``nprobe = nlist`` (IVF), ``ef_search`` >= the number of codes (HNSW)
or ``nhash * (nflip + 1) > n_bits`` (multi-index) the answers are exact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from deephash.errors import ConfigError
from deephash.index.ann_search import spec_of
from deephash.index.backend import register_backend
from deephash.index.faiss_indexes import ANN_INDEXES
from deephash.index.hash_index import HashIndex


class FaissFileBackend:
    """``faiss-<name>:PATH[?param=value&...]``: the index file at PATH, searched through that FAISS
    structure (the entry of :data:`~deephash.index.backend.INDEX_BACKENDS` for it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scheme = f"faiss-{name}"
        self.uri_form = f"{self.scheme}:PATH"

    def split(self, uri: str) -> tuple[str, dict[str, Any]]:
        """``(PATH, spec)`` of a URI of this scheme."""
        rest = uri.split(":", 1)[1]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigError(f"a {self.scheme} index is named {self.scheme}:PATH[?param=value&...]; got {uri!r}")
        try:
            params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) if query else {}
        except ValueError:
            raise ConfigError(f"{uri!r}: the parameters after '?' must read param=value&param=value") from None
        return path, spec_of(self.name, params)

    def local_path(self, uri: str) -> Path:
        return Path(self.split(uri)[0])

    def open_uri(self, uri: str, **options: Any) -> HashIndex:
        path, spec = self.split(uri)
        return HashIndex.open_uri(path, search=spec, **options)

    def create_uri(self, uri: str, n_bits: int, **kw: Any) -> HashIndex:
        path, spec = self.split(uri)
        return HashIndex.create_uri(path, n_bits, search=spec, **kw)


for _name in ANN_INDEXES.names():
    if ANN_INDEXES.get(_name).selectable:
        register_backend(f"faiss-{_name}")(FaissFileBackend(_name))
