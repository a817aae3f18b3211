"""What an export directory holds and the exporters' options, without TensorFlow: read by
``rfcn_tf.loading`` and the command-line parsers under any backend, written by the writers
of ``rfcn_tf.export`` (TensorFlow).

An export is ``EXPORT_DIR/VERSION/``: a SavedModel (``saved_model.pb``), or ``MODEL_FILES``'
``model.tflite`` / ``model.onnx`` with ``EXPORT_FILE``; beside it ``EXTRA_DIR`` (SavedModel)
or the directory itself holds ``CONFIG_FILE`` (the ``RFCNConfig``) and ``LABELS_FILE``.
"""

import os
import re

EXTRA_DIR = "assets.extra"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "rfcn_config.json"
EXPORT_FILE = "export.json"
FORMATS = ("saved_model", "tflite", "onnx")
DEFAULT_DIRS = {
    "saved_model": "saved_models/rfcn",
    "tflite": "saved_models/rfcn_tflite",
    "onnx": "saved_models/rfcn_onnx",
}
MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
QUANTIZATIONS = ("none", "float16", "dynamic_int8")
ONNX_OPSET = 17
PADDED_SIGNATURE = "predict_padded"


def default_input_size(config):
    """The size a TFLite/ONNX export takes when none is asked for: a landscape image already
    at the model's scale (shorter side ``min_side``, longer ``max_side``), so no resize runs."""
    from rfcn_tf.image_scale import inference_side

    return (inference_side(config.min_side), config.max_side)


def numeric_versions(base):
    """Version numbers of the all-digit sub-directories of ``base`` (as TF Serving sees them)."""
    if not os.path.isdir(base):
        return []
    return sorted(
        int(d) for d in os.listdir(base) if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(base, d))
    )
