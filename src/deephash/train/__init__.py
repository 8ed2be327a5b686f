"""One Trainer for every deep method."""
from deephash.train.sampling import TripletSampler, stratified_holdout
from deephash.devices import pick_device
from deephash.train.trainer import Trainer, TrainerConfig

__all__ = ["Trainer", "TrainerConfig", "pick_device", "TripletSampler", "stratified_holdout"]
