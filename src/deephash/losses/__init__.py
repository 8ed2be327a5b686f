"""Losses, one file each."""
from deephash.losses.adsh_loss import ADSHLoss
from deephash.losses.bihalf_loss import BiHalfLoss, bihalf
from deephash.losses.csq_loss import CSQLoss, hash_centres
from deephash.losses.deep_ranking_loss import DeepRankingLoss
from deephash.losses.dpq_loss import DPQLoss, soft_assign
from deephash.losses.dpsh_loss import DPSHLoss
from deephash.losses.dsh_loss import DSHLoss
from deephash.losses.dtsh_loss import DTSHLoss
from deephash.losses.greedyhash_loss import GreedyHashLoss, sign_ste
from deephash.losses.hashnet_loss import HashNetLoss
from deephash.losses.mhcln_loss import MHCLNLoss
from deephash.losses.mihash_loss import MIHashLoss
from deephash.losses.similarity import label_similarity
from deephash.losses.talr_loss import TALRLoss

__all__ = ["MHCLNLoss", "DPSHLoss", "DSHLoss", "HashNetLoss", "DTSHLoss", "CSQLoss", "GreedyHashLoss", "BiHalfLoss",
           "DPQLoss", "DeepRankingLoss", "bihalf", "hash_centres", "label_similarity", "sign_ste", "soft_assign"]
__all__ += ["MIHashLoss", "TALRLoss", "ADSHLoss"]  # the implicit family
