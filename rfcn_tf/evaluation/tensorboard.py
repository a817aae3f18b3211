"""An evaluation in a TensorBoard log dir: what ``MeanAveragePrecisionCallback(log_dir=...)``
writes at each evaluation, at step ``epoch`` (0-based, as Keras's ``TensorBoard`` callback):

- scalars ``val_mAP`` and ``val_AP/<class>`` (a class without ground truth, AP NaN, is left out);
- images ``val_pr_curve/<class>``: the class's precision–recall curve at the evaluation's IoU
  threshold (the VOC matching the AP is computed from; for ``metric="coco"`` the curve is
  that of IoU 0.5 by default, the title gives the COCO AP), drawn with Pillow;
- images ``val_images/<i>``: validation image ``i`` with its ground truth on the left and
  the detections scoring at least ``score_threshold`` on the right.

Why pictures rather than TensorBoard's ``pr_curve`` plugin: the plugin takes one score per
example and bins the scores into thresholds, as for a classifier; a detector's misses have no
score at all (recall stops below 1) and duplicates are false positives, so its curve would
not be the one the AP comes from.
"""

import math

import numpy as np

from rfcn_tf import _optional
from rfcn_tf.visualize import class_color, draw_detections, precision_recall_figure

GAP = 4  # white pixels between the ground-truth and the detection halves


def side_by_side(image, ground_truth, detections, class_names=None, score_threshold=0.5):
    """``uint8 [H, 2W + GAP, 3]``: the ground truth drawn on ``image`` (left) and the
    detections with score ≥ ``score_threshold`` (right). image: ``[H, W, 3]`` 0..255;
    ground_truth ``{"boxes" [G, 4], "labels" [G]}`` and detections ``{"boxes" [N, 4],
    "scores" [N], "labels" [N]}`` in the image's yxyx pixels."""
    left = draw_detections(
        image, ground_truth["boxes"], None, ground_truth["labels"], class_names=class_names
    )
    right = draw_detections(
        image,
        detections["boxes"],
        detections["scores"],
        detections["labels"],
        class_names=class_names,
        score_threshold=score_threshold,
    )
    gap = np.full((left.shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def write_evaluation(writer, step, result, curves, pictures=()):
    """Write one evaluation (module doc) with ``writer`` (a ``tf.summary`` writer) at ``step``.

    result: ``evaluate_detections``' dict; curves: ``precision_recall_curves``' dict (same
    keys as ``result["per_class"]``); pictures: ``uint8 [H, W, 3]`` images (``side_by_side``).
    """
    tf = _optional.tensorflow("TensorBoard logs (tf.summary)")
    with writer.as_default(step=step):
        tf.summary.scalar("val_mAP", result["mAP"])
        for index, (name, ap) in enumerate(result["per_class"].items()):
            if math.isnan(ap):
                continue
            tf.summary.scalar(f"val_AP/{name}", ap)
            if curves.get(name) is None:  # COCO: only crowd objects of the class
                continue
            precision, recall = curves[name]
            title = f"{name}: {result['metric']} AP {ap:.3f}, {len(precision)} detections"
            figure = precision_recall_figure(precision, recall, title, color=class_color(index))
            tf.summary.image(f"val_pr_curve/{name}", figure[None])
        for i, picture in enumerate(pictures):
            tf.summary.image(
                f"val_images/{i}",
                np.asarray(picture, np.uint8)[None],
                description="left: ground truth; right: detections",
            )
    writer.flush()
