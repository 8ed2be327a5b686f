"""Losses, one file each."""
from deephash.losses.deep_ranking_loss import DeepRankingLoss
from deephash.losses.mhcln_loss import MHCLNLoss
from deephash.losses.pairwise_likelihood_loss import PairwiseLikelihoodLoss, pair_similarity

__all__ = ["DeepRankingLoss", "MHCLNLoss", "PairwiseLikelihoodLoss", "pair_similarity"]
