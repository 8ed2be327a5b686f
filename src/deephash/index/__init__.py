"""Code storage and search: the index backends (local Hamming and PQ files, Milvus) behind one interface."""
from deephash.index.codes import binarize, check_codes, hamming_matrix, pack_bits, unpack_bits
from deephash.index.hash_index import FORMAT_VERSION, LOCAL_INDEX_TYPES, HashIndex, RerankResult, local_index_type
from deephash.index.pq_index import PQIndex
from deephash.index.milvus_index import MilvusIndex  # pymilvus is imported on first use only
from deephash.index.backend import (INDEX_BACKENDS, IndexBackend, IndexView, index_type_for, is_remote, new_index, open_index,
                                    require_model_codes)
from deephash.index.search import SEARCHERS, ExactSearcher, topk_from_distances
from deephash.index.kernel_searcher import KernelSearcher, default_searcher_name, kernel_available  # registers "deephash"
from deephash.index.faiss_indexes import ANN_INDEXES, AnnIndex, create_ann_index, list_ann_indexes, recall_at_k

__all__ = ["open_index", "new_index", "is_remote", "INDEX_BACKENDS", "IndexBackend", "IndexView", "require_model_codes", "HashIndex", "PQIndex", "LOCAL_INDEX_TYPES", "local_index_type", "index_type_for", "MilvusIndex", "RerankResult", "FORMAT_VERSION", "pack_bits", "unpack_bits", "binarize", "check_codes",
           "hamming_matrix", "SEARCHERS", "ExactSearcher", "topk_from_distances", "KernelSearcher",
           "default_searcher_name", "kernel_available", "ANN_INDEXES", "AnnIndex", "create_ann_index",
           "list_ann_indexes", "recall_at_k"]
