"""rfcn_tf: R-FCN object detection (Dai et al., NIPS 2016) for Keras 3 / TensorFlow 2."""

import importlib.util

if importlib.util.find_spec("tensorflow") is None:
    raise ModuleNotFoundError(
        "rfcn_tf needs TensorFlow, which is installed by an extra: "
        "pip install 'rfcn_tf[cpu]' (tensorflow-cpu) or 'rfcn_tf[gpu]' (tensorflow[and-cuda])",
        name="tensorflow",
    )

from rfcn_tf import (
    data,  # noqa: E402  (registers the rfcn_shapes TFDS dataset)
    distribution,  # noqa: E402
)
from rfcn_tf._version import __version__  # noqa: E402
from rfcn_tf.config import RFCNConfig  # noqa: E402
from rfcn_tf.decoding import with_decoding  # noqa: E402
from rfcn_tf.export import export_onnx, export_saved_model, export_tflite  # noqa: E402
from rfcn_tf.frozen import freeze_for_inference  # noqa: E402
from rfcn_tf.inputs import pack_images  # noqa: E402
from rfcn_tf.layers import PSRoIPool  # noqa: E402
from rfcn_tf.loading import load_detector  # noqa: E402
from rfcn_tf.model import RFCN  # noqa: E402
from rfcn_tf.tiling import predict_tiled, tile_grid  # noqa: E402

__all__ = [
    "PSRoIPool",
    "RFCN",
    "RFCNConfig",
    "__version__",
    "data",
    "distribution",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "freeze_for_inference",
    "load_detector",
    "pack_images",
    "predict_tiled",
    "tile_grid",
    "with_decoding",
]
