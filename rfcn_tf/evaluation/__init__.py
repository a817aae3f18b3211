"""Detection metrics (VOC07 11-point, VOC2010+ area, COCO) and the mAP callback.

- ``evaluate_detections(detections, ground_truth, metric=…)``: per-image lists → result.
- ``evaluate_model(model, dataset, metric=…)``: run a detector over a dataset, then score.
- ``evaluate_tiled(model, examples, tile=…)``: the same over large images, tile by tile.
- ``MeanAveragePrecisionCallback``: ``val_mAP`` and ``val_AP/<class>`` in ``fit``'s logs.
- ``precision_recall_curves(detections, ground_truth, …)``: per-class curves behind the VOC AP.
- ``format_table(result)`` / ``save_json(result, path)``: present a result.
"""

from rfcn_tf.evaluation.callback import MeanAveragePrecisionCallback
from rfcn_tf.evaluation.metrics import METRICS, evaluate_detections, precision_recall_curves
from rfcn_tf.evaluation.model_evaluation import collect_detections, evaluate_model
from rfcn_tf.evaluation.report import format_table, save_json
from rfcn_tf.evaluation.tiled import evaluate_tiled

__all__ = [
    "METRICS",
    "MeanAveragePrecisionCallback",
    "collect_detections",
    "evaluate_detections",
    "evaluate_model",
    "evaluate_tiled",
    "format_table",
    "precision_recall_curves",
    "save_json",
]
