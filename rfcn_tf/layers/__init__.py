"""R-FCN's Keras layers (all registered under the ``rfcn_tf`` package for ``.keras`` files)."""

from rfcn_tf.layers.detection import DetectionDecoder
from rfcn_tf.layers.heads import FasterRCNNHead, RFCNHead
from rfcn_tf.layers.proposals import ProposalLayer
from rfcn_tf.layers.psroi_pool import PSRoIPool
from rfcn_tf.layers.rpn import RPNHead

__all__ = ["DetectionDecoder", "FasterRCNNHead", "PSRoIPool", "ProposalLayer", "RFCNHead", "RPNHead"]
