"""Detection metrics (VOC07 11-point, VOC2010+ area, COCO) and the mAP callback.

- ``evaluate_detections(detections, ground_truth, metric=…)``: per-image lists → result.
- ``evaluate_model(model, dataset, metric=…)``: run a detector over a dataset, then score.
- ``evaluate_tiled(model, examples, tile=…)``: the same over large images, tile by tile.
- ``MeanAveragePrecisionCallback``: ``val_mAP`` and ``val_AP/<class>`` in ``fit``'s logs.
- ``precision_recall_curves(detections, ground_truth, …)``: per-class curves behind the VOC AP.
- ``format_table(result)`` / ``save_json(result, path)``: present a result.
"""

from rfcn_tf import _optional
from rfcn_tf.evaluation.metrics import METRICS, evaluate_detections, precision_recall_curves
from rfcn_tf.evaluation.report import format_table, save_json

# Imported on first use under a backend other than TensorFlow (``_optional.lazy_names``):
# they import the model's input helpers, and tiling the TensorFlow-only loader.
_NAMES = {
    "MeanAveragePrecisionCallback": (
        "rfcn_tf.evaluation.callback",
        "MeanAveragePrecisionCallback",
        "rfcn_tf.evaluation.MeanAveragePrecisionCallback",
    ),
    "collect_detections": (
        "rfcn_tf.evaluation.model_evaluation",
        "collect_detections",
        "rfcn_tf.evaluation.collect_detections",
    ),
    "evaluate_model": (
        "rfcn_tf.evaluation.model_evaluation",
        "evaluate_model",
        "rfcn_tf.evaluation.evaluate_model",
    ),
    "evaluate_tiled": (
        "rfcn_tf.evaluation.tiled",
        "evaluate_tiled",
        "tiled evaluation (rfcn_tf.evaluation.evaluate_tiled)",
    ),
}

__all__ = ["METRICS", "evaluate_detections", "format_table", "precision_recall_curves", "save_json", *_NAMES]
__getattr__, __dir__, _eager = _optional.lazy_names(globals(), _NAMES)
_eager()
