"""Losses, one file each."""
from deephash.losses.deep_ranking_loss import DeepRankingLoss
from deephash.losses.mhcln_loss import MHCLNLoss
from deephash.losses.central_similarity_loss import CentralSimilarityLoss, hadamard_centers
from deephash.losses.pairwise_likelihood_loss import PairwiseLikelihoodLoss, pair_similarity

__all__ = ["CentralSimilarityLoss", "hadamard_centers", "DeepRankingLoss", "MHCLNLoss", "PairwiseLikelihoodLoss", "pair_similarity"]
