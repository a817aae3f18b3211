"""rfcn_tf: R-FCN object detection for Keras 3 / TensorFlow 2."""

from rfcn_tf.config import RFCNConfig

__version__ = "0.1.0"
