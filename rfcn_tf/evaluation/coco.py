"""COCO box AP through pycocotools' ``COCOeval``.

Our yxyx pixel boxes become COCO ``[x, y, width, height]``; image ids are 1-based list
positions and category ids are ``label + 1`` (COCO's ids start at 1). ``difficult``
ground truth becomes ``iscrowd=1``: it is not counted as a positive and detections on it
are ignored, but COCO matches crowd regions by intersection over the *detection's* area
and lets several detections match one, which differs from VOC's ``difficult``. A ground
truth's ``area`` (used for the small/medium/large split) is its box area, whereas the
official COCO annotations use the segmentation area.
"""

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats, in its order.
SUMMARY_KEYS = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


def to_xywh(boxes):
    """``[N, 4]`` yxyx → ``[N, 4]`` COCO ``[x, y, width, height]``."""
    return np.stack(
        [boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]],
        axis=-1,
    )


def to_coco(detections, ground_truth, num_classes):
    """Validated per-image dicts → ``(gt_dataset, dt_dataset)`` COCO-format dicts."""
    images = [{"id": i + 1} for i in range(len(ground_truth))]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    gt_anns, dt_anns = [], []
    for i, (det, gt) in enumerate(zip(detections, ground_truth)):
        for box, label, difficult in zip(to_xywh(gt["boxes"]), gt["labels"], gt["difficult"]):
            gt_anns.append(_annotation(len(gt_anns) + 1, i + 1, box, label, iscrowd=difficult))
        for box, label, score in zip(to_xywh(det["boxes"]), det["labels"], det["scores"]):
            ann = _annotation(len(dt_anns) + 1, i + 1, box, label, iscrowd=False)
            dt_anns.append({**ann, "score": float(score)})
    base = {"images": images, "categories": categories}
    return {**base, "annotations": gt_anns}, {**base, "annotations": dt_anns}


def evaluate(detections, ground_truth, num_classes):
    """COCO box metrics for validated per-image dicts.

    Returns ``(summary, per_class_ap, num_positives, num_detections)``: the 12
    ``COCOeval.stats`` under ``SUMMARY_KEYS`` (NaN where COCO reports −1), and per class
    c (lists of length num_classes) AP@[.5:.95] over all areas at 100 detections (NaN for
    a class without non-crowd ground truth), non-crowd ground-truth and detection counts.
    """
    gt_dataset, dt_dataset = to_coco(detections, ground_truth, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress and tables
        coco_eval = COCOeval(_coco(gt_dataset), _coco(dt_dataset), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    summary = {k: _nan_if_missing(v) for k, v in zip(SUMMARY_KEYS, coco_eval.stats)}

    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    per_class = []
    for c in range(num_classes):
        valid = precision[:, :, c] > -1
        per_class.append(float(precision[:, :, c][valid].mean()) if valid.any() else np.nan)
    num_positives = [0] * num_classes
    num_dets = [0] * num_classes
    for ann in gt_dataset["annotations"]:
        num_positives[ann["category_id"] - 1] += not ann["iscrowd"]
    for ann in dt_dataset["annotations"]:
        num_dets[ann["category_id"] - 1] += 1
    return summary, per_class, num_positives, num_dets


def _annotation(ann_id, image_id, box, label, iscrowd):
    # ids start at 1: COCOeval stores matched ids and reads 0 as "unmatched".
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(label) + 1,
        "bbox": [float(v) for v in box],
        "area": float(box[2] * box[3]),
        "iscrowd": int(iscrowd),
    }


def _coco(dataset):
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _nan_if_missing(value):
    return float("nan") if value == -1 else float(value)
