"""Exports: a SavedModel for TF Serving, TFLite and ONNX files, each written atomically as a
numbered version directory; and the frozen detector the SavedModel serves.

The entry points below need TensorFlow and are imported on first use (PEP 562), so
``rfcn_tf.export.files`` (what an export directory holds) reads without it. One job a module:

    files.py        names and options of an export directory, reading its versions (no TF)
    versions.py     writing a version directory atomically, with labels and config (no TF)
    folding.py      the one way a graph gets its weights: constants, BatchNorms folded
    frozen.py       FrozenDetector / freeze_for_inference, the SavedModel's graph
    signatures.py   the SavedModel's serving signatures
    saved_model.py  export_saved_model
    portable.py     the fixed-size portable graph; export_tflite, export_onnx
    logs.py         the exporters' INFO lines hidden
"""

from rfcn_tf import _optional

# name → (module, attribute, what a missing TensorFlow is reported as)
_NAMES = {
    "export_saved_model": (
        "rfcn_tf.export.saved_model",
        "export_saved_model",
        "SavedModel export (rfcn_tf.export_saved_model)",
    ),
    "export_tflite": ("rfcn_tf.export.portable", "export_tflite", "TFLite export (rfcn_tf.export_tflite)"),
    "export_onnx": ("rfcn_tf.export.portable", "export_onnx", "ONNX export (rfcn_tf.export_onnx)"),
    "freeze_for_inference": (
        "rfcn_tf.export.frozen",
        "freeze_for_inference",
        "rfcn_tf.freeze_for_inference (a frozen TF graph)",
    ),
    "FrozenDetector": ("rfcn_tf.export.frozen", "FrozenDetector", "rfcn_tf.export.FrozenDetector"),
}

__all__ = list(_NAMES)
__getattr__, __dir__, _ = _optional.lazy_names(globals(), _NAMES)
