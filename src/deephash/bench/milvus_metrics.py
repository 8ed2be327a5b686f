"""What a Milvus server says about its own memory on its Prometheus ``/metrics`` page (e.g.
``http://127.0.0.1:9091/metrics``): the query node's accounting of the sealed rows of a collection
(``milvus_querynode_entity_size`` / ``_entity_num``) and the server process's resident memory."""
from __future__ import annotations

import re
import urllib.request
from typing import Any

_ENTITY = re.compile(r"milvus_querynode_entity_(size|num)\{.*\}\s+(\S+)$")


def fetch_metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def sealed_entity_bytes(text: str, collection_id: int) -> dict[str, Any]:
    """Rows and bytes of ``collection_id``'s sealed segments, as the query node counts them."""
    size = num = 0.0
    for line in text.splitlines():
        if f'collection_id="{collection_id}"' not in line or 'segment_state="Sealed"' not in line:
            continue
        m = _ENTITY.match(line)
        if m and m.group(1) == "size":
            size += float(m.group(2))
        elif m:
            num += float(m.group(2))
    return {"sealed_rows": int(num), "sealed_bytes": int(size), "bytes_per_row": round(size / num, 1) if num else None}


def resident_mb(text: str) -> float | None:
    """The server process's resident memory (``process_resident_memory_bytes``) in MB, if it reports it."""
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes"):
            return round(float(line.split()[-1]) / 2**20, 1)
    return None
