"""Binary code storage and Hamming search."""
from deephash.index.codes import binarize, check_codes, hamming_matrix, pack_bits, unpack_bits
from deephash.index.hash_index import FORMAT_VERSION, HashIndex, RerankResult
from deephash.index.search import SEARCHERS, ExactSearcher, topk_from_distances
from deephash.index.kernel_searcher import KernelSearcher, default_searcher_name, kernel_available  # registers "deephash"

__all__ = ["HashIndex", "RerankResult", "FORMAT_VERSION", "pack_bits", "unpack_bits", "binarize", "check_codes",
           "hamming_matrix", "SEARCHERS", "ExactSearcher", "topk_from_distances", "KernelSearcher",
           "default_searcher_name", "kernel_available"]
