"""rfcn_tf: R-FCN object detection (Dai et al., NIPS 2016) for Keras 3 / TensorFlow 2."""

from rfcn_tf import data  # registers the rfcn_shapes TFDS dataset
from rfcn_tf.config import RFCNConfig
from rfcn_tf.export import export_saved_model, load_detector
from rfcn_tf.inputs import pack_images
from rfcn_tf.layers import PSRoIPool
from rfcn_tf.model import RFCN

__version__ = "0.1.0"

__all__ = ["PSRoIPool", "RFCN", "RFCNConfig", "data", "export_saved_model", "load_detector",
           "pack_images"]
