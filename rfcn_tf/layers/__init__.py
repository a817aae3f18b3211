"""R-FCN's Keras layers (all registered under the ``rfcn_tf`` package for ``.keras`` files)."""

from rfcn_tf.batch_norm import BatchNormalization
from rfcn_tf.layers.detection import DetectionDecoder
from rfcn_tf.layers.heads import RoIAlign, UnflattenRoIs, Vote
from rfcn_tf.layers.proposals import ProposalLayer
from rfcn_tf.layers.psroi_pool import PSRoIPool
from rfcn_tf.layers.rpn import AnchorGrid
from rfcn_tf.layers.transform import ImageResizer, Preprocess

__all__ = [
    "AnchorGrid",
    "BatchNormalization",
    "DetectionDecoder",
    "ImageResizer",
    "PSRoIPool",
    "Preprocess",
    "ProposalLayer",
    "RoIAlign",
    "UnflattenRoIs",
    "Vote",
]
