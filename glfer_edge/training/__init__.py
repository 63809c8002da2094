"""Training GLFER-Net (needs the ``torch`` extra): dataset, SELD loss, augmentations, the fit loop and weight
averaging."""

from glfer_edge.training.augment import FOA_TRANSFORMS, AugmentConfig, ChannelSwap, SELDAugment
from glfer_edge.training.average import average_weights
from glfer_edge.training.dataset import DatasetFile, SELDDataset
from glfer_edge.training.loss import DistanceLossTerms, LossTerms, SELDLoss, reduce_distance, reduce_targets
from glfer_edge.training.trainer import TrainConfig, Trainer, TrainResult, predict

__all__ = [
    "FOA_TRANSFORMS", "AugmentConfig", "ChannelSwap", "SELDAugment", "DatasetFile", "SELDDataset", "LossTerms",
    "DistanceLossTerms", "SELDLoss", "reduce_targets", "reduce_distance", "TrainConfig", "Trainer", "TrainResult", "predict", "average_weights",
]
