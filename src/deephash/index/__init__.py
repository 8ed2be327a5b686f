"""Code storage and search: the index backends (local Hamming and PQ files, the Hamming file searched
through a FAISS structure, Milvus) behind one interface.

The backends and index types of :mod:`deephash.index.backend` register themselves when their module
is imported, which happens here, so anything that imports ``deephash.index.*`` finds every one
registered (``backend.py`` imports none of them: no import circle)."""
from deephash.codes import binarize, check_codes, hamming_matrix, pack_bits, unpack_bits
from deephash.index.backend import (INDEX_BACKENDS, LOCAL_INDEX_TYPES, IndexBackend, IndexView, index_type_for, is_remote,
                                    local_index_type, local_path, new_index, open_index, require_model_codes)
from deephash.index.hash_index import FORMAT_VERSION, HashIndex, RerankResult  # registers "file" and code kind "hamming"
from deephash.index.pq_index import PQIndex  # registers code kind "pq"
from deephash.index.milvus_index import MilvusIndex  # registers "milvus"; pymilvus is imported on first use only
from deephash.index.faiss_backend import FaissFileBackend  # registers "faiss-ivf", "faiss-hnsw", "faiss-mih"
from deephash.index.search import SEARCHERS, ExactSearcher, topk_from_distances
from deephash.index.kernel_searcher import KernelSearcher, default_searcher_name, kernel_available  # registers "deephash"
from deephash.index.faiss_indexes import ANN_INDEXES, AnnIndex, create_ann_index, list_ann_indexes, recall_at_k

__all__ = ["open_index", "new_index", "is_remote", "local_path", "FaissFileBackend", "INDEX_BACKENDS", "IndexBackend", "IndexView", "require_model_codes", "HashIndex", "PQIndex", "LOCAL_INDEX_TYPES", "local_index_type", "index_type_for", "MilvusIndex", "RerankResult", "FORMAT_VERSION", "pack_bits", "unpack_bits", "binarize", "check_codes",
           "hamming_matrix", "SEARCHERS", "ExactSearcher", "topk_from_distances", "KernelSearcher",
           "default_searcher_name", "kernel_available", "ANN_INDEXES", "AnnIndex", "create_ann_index",
           "list_ann_indexes", "recall_at_k"]
