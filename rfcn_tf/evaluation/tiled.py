"""Scoring a detector on a dataset of large images, each detected tile by tile.

The images are read one at a time at their own size (no resize, no padded batch) and
detected with ``rfcn_tf.tiling.predict_tiled``; boxes are compared in the image's pixels.
"""

import keras
import numpy as np

from rfcn_tf.evaluation.metrics import evaluate_detections
from rfcn_tf.tiling import predict_tiled


def evaluate_tiled(
    model,
    examples,
    tile=None,
    overlap=0.2,
    batch_size=4,
    merge="edges",
    metric="voc07",
    class_names=None,
    iou_threshold=0.5,
    verbose=0,
):
    """``evaluate_detections``' result for ``model`` (an ``RFCN`` or a ``Detector``) on
    ``examples`` (common examples, ``rfcn_tf.data.load_examples``: ``{"image" uint8 [H, W,
    3], "boxes" [N, 4] yxyx pixels, "labels" [N], "difficult" [N]}``: a ``tf.data.Dataset``, or
    a sequence of numpy ones, ``rfcn_tf.data.read_examples``), each image detected by
    ``predict_tiled(model, image, tile, overlap, batch_size, merge)``.
    verbose: 1 shows a ``keras.utils.Progbar`` (images)."""
    if hasattr(examples, "as_numpy_iterator"):
        count, items = int(examples.cardinality()), examples.as_numpy_iterator()
    else:
        count = len(examples)
        items = (examples[i] for i in range(count))
    progbar = keras.utils.Progbar(count if count >= 0 else None, verbose=verbose, unit_name="image")
    detections, ground_truth = [], []
    for step, example in enumerate(items):
        out = predict_tiled(
            model, example["image"], tile=tile, overlap=overlap, batch_size=batch_size, merge=merge
        )
        detections.append(
            {"boxes": out["boxes"][0], "scores": out["confidence"][0], "labels": out["labels"][0]}
        )
        ground_truth.append(
            {
                "boxes": example["boxes"],
                "labels": example["labels"],
                "difficult": np.asarray(example["difficult"], bool),
            }
        )
        progbar.update(step + 1)
    return evaluate_detections(
        detections, ground_truth, metric=metric, iou_threshold=iou_threshold, class_names=class_names
    )
