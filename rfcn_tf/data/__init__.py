"""Datasets and ``tf.data`` pipelines for R-FCN.

Every source yields the common example ``{"image": uint8 [H, W, 3], "boxes": float32
[N, 4] absolute yxyx pixels, "labels": int32 [N] in 0..C−1, "difficult": bool [N],
"image_id": string}``; :func:`make_pipeline` turns those into padded batches for
``model.fit``. Boxes use the edge convention: a box covering pixel rows r0..r1 and
columns c0..c1 is ``[r0, c0, r1 + 1, c1 + 1]``.

Importing this package registers the ``rfcn_shapes`` TFDS dataset.
"""

from rfcn_tf.data.augment import AUGMENT_PRESETS
from rfcn_tf.data.pipeline import make_pipeline
from rfcn_tf.data.shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from rfcn_tf.data.shapes_builder import RfcnShapes, RfcnShapesConfig
from rfcn_tf.data.sources import load_examples
from rfcn_tf.data.validation import dropped_boxes, log_dropped_boxes, validate_examples

__all__ = [
    "AUGMENT_PRESETS",
    "SHAPES_CLASS_NAMES",
    "RfcnShapes",
    "RfcnShapesConfig",
    "dropped_boxes",
    "load_examples",
    "log_dropped_boxes",
    "make_pipeline",
    "validate_examples",
]
