"""Evaluation: metrics, protocols and reports."""
from deephash.eval.metrics import mean_average_precision, relevance_matrix

__all__ = ["mean_average_precision", "relevance_matrix"]
