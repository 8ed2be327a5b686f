"""Losses, one file each."""
from deephash.losses.mhcln_loss import MHCLNLoss

__all__ = ["MHCLNLoss"]
