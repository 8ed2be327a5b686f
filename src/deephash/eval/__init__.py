"""Evaluation: metrics, protocols and reports."""
from deephash.eval.metrics import (
    evaluate_codes,
    evaluate_features,
    mean_average_precision,
    pr_curve_over_radii,
    precision_at_k_curve,
    precision_recall_at_radius,
    relevance_matrix,
    tie_aware_map,
)
from deephash.eval.protocols import PROTOCOLS, Protocol, Split, get_protocol, list_protocols

__all__ = [
    "mean_average_precision",
    "tie_aware_map",
    "precision_recall_at_radius",
    "precision_at_k_curve",
    "pr_curve_over_radii",
    "relevance_matrix",
    "evaluate_codes",
    "evaluate_features",
    "PROTOCOLS",
    "Protocol",
    "Split",
    "get_protocol",
    "list_protocols",
]
