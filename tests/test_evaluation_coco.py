"""The COCO metric against pycocotools run directly on the same data."""

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rfcn_tf.evaluation import evaluate_detections

NUM_CLASSES = 3
STAT_KEYS = [
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
]  # fmt: skip


def random_data(seed):
    """Images of mixed object sizes (small, medium and large in COCO's sense)."""
    rng = np.random.default_rng(seed)
    detections, ground_truth = [], []
    for _ in range(8):
        g = int(rng.integers(0, 5))
        corner = rng.uniform(0, 300, (g, 2))
        gt_boxes = np.concatenate([corner, corner + rng.uniform(10, 150, (g, 2))], 1)
        gt_labels = rng.integers(0, NUM_CLASSES, g)
        ground_truth.append({"boxes": gt_boxes, "labels": gt_labels, "difficult": rng.random(g) < 0.15})
        copies = rng.integers(0, max(g, 1), 2 * g)
        boxes = gt_boxes[copies] + rng.normal(0, 6, (2 * g, 4)) if g else np.zeros((0, 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = gt_labels[copies] if g else np.zeros(0, int)
        detections.append({"boxes": boxes, "scores": rng.random(len(boxes)), "labels": labels})
    return detections, ground_truth


def xywh(box):
    y0, x0, y1, x1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def pycocotools_stats(detections, ground_truth, cat_ids=None):
    """COCOeval.stats, built the documented way: a GT dataset plus ``loadRes``."""
    images, annotations, results = [], [], []
    for image_id, (det, gt) in enumerate(zip(detections, ground_truth), start=1):
        images.append({"id": image_id, "height": 500, "width": 500})
        for box, label, difficult in zip(gt["boxes"], gt["labels"], gt["difficult"]):
            x, y, w, h = xywh(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": int(label) + 1, "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": int(difficult),
            })  # fmt: skip
        for box, label, score in zip(det["boxes"], det["labels"], det["scores"]):
            results.append({
                "image_id": image_id, "category_id": int(label) + 1,
                "bbox": xywh(box), "score": float(score),
            })  # fmt: skip
    gt_coco = COCO()
    gt_coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(NUM_CLASSES)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco.createIndex()
        coco_eval = COCOeval(gt_coco, gt_coco.loadRes(results), "bbox")
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [math.nan if s == -1 else s for s in coco_eval.stats]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools(seed):
    detections, ground_truth = random_data(seed)
    result = evaluate_detections(detections, ground_truth, metric="coco", num_classes=NUM_CLASSES)
    expected = pycocotools_stats(detections, ground_truth)
    np.testing.assert_allclose([result["coco"][k] for k in STAT_KEYS], expected)
    assert result["mAP"] == pytest.approx(expected[0])
    assert "iou_threshold" not in result
    for c in range(NUM_CLASSES):
        alone = pycocotools_stats(detections, ground_truth, cat_ids=[c + 1])[0]
        np.testing.assert_allclose(result["per_class"][c], alone)


def test_difficult_becomes_crowd():
    # The only object is difficult → crowd: no positives, and the detection on it is
    # ignored (not a false positive), so COCO has nothing to measure.
    ground_truth = [{"boxes": [[0, 0, 50, 50]], "labels": [0], "difficult": [True]}]
    detections = [{"boxes": [[0, 0, 50, 50]], "scores": [0.9], "labels": [0]}]
    result = evaluate_detections(detections, ground_truth, metric="coco", num_classes=1)
    assert math.isnan(result["mAP"])
    assert result["classes_without_ground_truth"] == [0]
    assert result["num_ground_truth"] == {0: 0}


def test_no_detections_at_all():
    ground_truth = [{"boxes": [[0, 0, 50, 50]], "labels": [1]}, {"boxes": [], "labels": []}]
    detections = [{"boxes": [], "scores": [], "labels": []}] * 2
    result = evaluate_detections(detections, ground_truth, metric="coco", class_names=["a", "b"])
    assert result["mAP"] == 0.0
    assert result["coco"]["AR100"] == 0.0
    assert result["per_class"]["b"] == 0.0
    assert math.isnan(result["per_class"]["a"])
