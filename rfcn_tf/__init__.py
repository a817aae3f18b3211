"""rfcn_tf: R-FCN object detection (Dai et al., NIPS 2016) for Keras 3 / TensorFlow 2."""

from rfcn_tf import data  # registers the rfcn_shapes TFDS dataset
from rfcn_tf.config import RFCNConfig
from rfcn_tf.inputs import pack_images
from rfcn_tf.model import RFCN

__version__ = "0.1.0"

__all__ = ["RFCN", "RFCNConfig", "data", "pack_images"]
