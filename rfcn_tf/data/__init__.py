"""Datasets for R-FCN: ``tf.data`` pipelines, and a ``keras.utils.PyDataset`` without TensorFlow.

Every source yields the common example ``{"image": uint8 [H, W, 3], "boxes": float32
[N, 4] absolute yxyx pixels, "labels": int32 [N] in 0..C−1, "difficult": bool [N],
"image_id": string}``; :func:`make_pipeline` (``tf.data``) and :class:`DetectionDataset`
(numpy and Pillow, any Keras backend) turn those into padded batches for ``model.fit``.
Boxes use the edge convention: a box covering pixel rows r0..r1 and columns c0..c1 is
``[r0, c0, r1 + 1, c1 + 1]``.

Under the TensorFlow backend importing this package imports everything and so registers the
``rfcn_shapes`` TFDS dataset (``tfds.builder("rfcn_shapes")``; ``load_examples`` registers it
itself). Under another backend the ``tf.data`` / TFDS names are imported on first use and
raise a ``ModuleNotFoundError`` naming the feature when TensorFlow is missing.
"""

from rfcn_tf import _optional
from rfcn_tf.data.py_dataset import DetectionDataset, read_examples
from rfcn_tf.data.shapes import CLASS_NAMES as SHAPES_CLASS_NAMES

_TF_DATA = "the tf.data pipeline (without TensorFlow: rfcn_tf.data.DetectionDataset)"
# name → (module, attribute, what the error calls it), in the order the package imported them before
_NAMES = {
    "AUGMENT_PRESETS": (
        "rfcn_tf.data.augment",
        "AUGMENT_PRESETS",
        f"rfcn_tf.data.AUGMENT_PRESETS, {_TF_DATA}",
    ),
    "make_pipeline": ("rfcn_tf.data.pipeline", "make_pipeline", f"rfcn_tf.data.make_pipeline, {_TF_DATA}"),
    "RfcnShapes": (
        "rfcn_tf.data.shapes_builder",
        "RfcnShapes",
        "the rfcn_shapes TFDS builder (rfcn_tf.data.RfcnShapes)",
    ),
    "RfcnShapesConfig": (
        "rfcn_tf.data.shapes_builder",
        "RfcnShapesConfig",
        "the rfcn_shapes TFDS builder (rfcn_tf.data.RfcnShapesConfig)",
    ),
    "load_examples": (
        "rfcn_tf.data.sources",
        "load_examples",
        f"rfcn_tf.data.load_examples (TFDS datasets, {_TF_DATA})",
    ),
    "dropped_boxes": ("rfcn_tf.data.validation", "dropped_boxes", f"rfcn_tf.data.dropped_boxes, {_TF_DATA}"),
    "log_dropped_boxes": (
        "rfcn_tf.data.validation",
        "log_dropped_boxes",
        f"rfcn_tf.data.log_dropped_boxes, {_TF_DATA}",
    ),
    "validate_examples": (
        "rfcn_tf.data.validation",
        "validate_examples",
        f"rfcn_tf.data.validate_examples, {_TF_DATA}",
    ),
}

__all__ = ["DetectionDataset", "SHAPES_CLASS_NAMES", "read_examples", *_NAMES]
__getattr__, __dir__, _eager = _optional.lazy_names(globals(), _NAMES)
_eager()
