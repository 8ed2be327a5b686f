"""Binary code storage and Hamming search.

The backends of :mod:`deephash.index.backend` register their URI schemes when their module is
imported, which happens here, so anything that imports ``deephash.index.*`` finds every backend
registered (``backend.py`` imports none of them: no import circle)."""
from deephash.codes import binarize, check_codes, hamming_matrix, pack_bits, unpack_bits
from deephash.index.backend import INDEX_BACKENDS, IndexBackend, IndexView, is_remote, local_path, new_index, open_index
from deephash.index.hash_index import FORMAT_VERSION, HashIndex, RerankResult  # registers "file"
from deephash.index.milvus_index import MilvusIndex  # registers "milvus"; pymilvus is imported on first use only
from deephash.index.faiss_backend import FaissFileBackend  # registers "faiss-ivf", "faiss-hnsw", "faiss-mih"
from deephash.index.search import SEARCHERS, ExactSearcher, topk_from_distances
from deephash.index.kernel_searcher import KernelSearcher, default_searcher_name, kernel_available  # registers "deephash"
from deephash.index.faiss_indexes import ANN_INDEXES, AnnIndex, create_ann_index, list_ann_indexes, recall_at_k

__all__ = ["open_index", "new_index", "is_remote", "local_path", "FaissFileBackend", "INDEX_BACKENDS", "IndexBackend", "IndexView", "HashIndex", "MilvusIndex", "RerankResult", "FORMAT_VERSION", "pack_bits", "unpack_bits", "binarize", "check_codes",
           "hamming_matrix", "SEARCHERS", "ExactSearcher", "topk_from_distances", "KernelSearcher",
           "default_searcher_name", "kernel_available", "ANN_INDEXES", "AnnIndex", "create_ann_index",
           "list_ann_indexes", "recall_at_k"]
