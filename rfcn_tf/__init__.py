"""rfcn_tf: R-FCN object detection (Dai et al., NIPS 2016) for Keras 3.

Under the TensorFlow backend (Keras's default) importing the package imports everything, as
it always has: the model's classes are registered for ``keras.models.load_model`` and the
``rfcn_shapes`` TFDS dataset for ``tfds.builder``. Under another backend (``KERAS_BACKEND=jax``
or ``torch``), or without TensorFlow installed, each name below is imported on first use
(PEP 562), so the package imports without TensorFlow; the model and its layers are imported
at once when the backend is not TensorFlow (registering them for ``keras.saving.load_model``).
A TensorFlow-only feature (exports, ``freeze_for_inference``, ``distribution.make_strategy``,
``data.make_pipeline``…) then raises a ``ModuleNotFoundError`` naming itself and the extra to
install.
"""

from rfcn_tf import _optional
from rfcn_tf._version import __version__

# name → (module, attribute or None for the module itself, what the error calls it);
# in the order the package imported them eagerly before.
_NAMES = {
    "data": ("rfcn_tf.data", None, "rfcn_tf.data"),
    "distribution": ("rfcn_tf.distribution", None, "tf.distribute strategies (rfcn_tf.distribution)"),
    "RFCNConfig": ("rfcn_tf.config", "RFCNConfig", "rfcn_tf.RFCNConfig"),
    "with_decoding": ("rfcn_tf.decoding", "with_decoding", "rfcn_tf.with_decoding"),
    "export_onnx": ("rfcn_tf.export", "export_onnx", "ONNX export (rfcn_tf.export_onnx)"),
    "export_saved_model": (
        "rfcn_tf.export",
        "export_saved_model",
        "SavedModel export (rfcn_tf.export_saved_model)",
    ),
    "export_tflite": ("rfcn_tf.export", "export_tflite", "TFLite export (rfcn_tf.export_tflite)"),
    "freeze_for_inference": (
        "rfcn_tf.export",
        "freeze_for_inference",
        "rfcn_tf.freeze_for_inference (a frozen TF graph)",
    ),
    "pack_images": ("rfcn_tf.inputs", "pack_images", "rfcn_tf.pack_images"),
    "PSRoIPool": ("rfcn_tf.layers", "PSRoIPool", "rfcn_tf.PSRoIPool"),
    "load_detector": (
        "rfcn_tf.loading",
        "load_detector",
        "rfcn_tf.load_detector (.keras and SavedModel loading)",
    ),
    "load_model": ("rfcn_tf.loading", "load_model", "rfcn_tf.load_model (.keras files of any release)"),
    "RFCN": ("rfcn_tf.model", "RFCN", "rfcn_tf.RFCN"),
    "predict_tiled": ("rfcn_tf.tiling", "predict_tiled", "tiled prediction (rfcn_tf.predict_tiled)"),
    "tile_grid": ("rfcn_tf.tiling", "tile_grid", "tiled prediction (rfcn_tf.tile_grid)"),
    "adapt_batchnorm": ("rfcn_tf.adaptation", "adapt_batchnorm", "rfcn_tf.adapt_batchnorm"),
}

__all__ = ["__version__", *_NAMES]
__getattr__, __dir__, _eager = _optional.lazy_names(
    globals(), _NAMES, registering=("RFCN", "RFCNConfig", "PSRoIPool")
)
_eager()
