"""``evaluate_detections``: mean average precision of per-image detections."""

import math

import numpy as np

from rfcn_tf.evaluation import coco, inputs, voc

METRICS = ("voc07", "voc", "coco")


def evaluate_detections(
    detections,
    ground_truth,
    metric="voc07",
    num_classes=None,
    iou_threshold=0.5,
    class_names=None,
):
    """Mean average precision of detections against ground truth.

    Args:
        detections: one dict per image, ``{"boxes": [N, 4] yxyx pixels, "scores": [N],
            "labels": [N] int}`` (numpy arrays, lists or eager tensors).
        ground_truth: one dict per image, ``{"boxes": [G, 4], "labels": [G],
            "difficult": [G] bool (optional)}``, in the same order as ``detections``.
        metric: ``"voc07"`` (VOC2007 11-point AP), ``"voc"`` (VOC2010+ area under the
            precision envelope) or ``"coco"`` (pycocotools, AP@[.5:.95]; ``difficult``
            becomes COCO's ``iscrowd``, see ``rfcn_tf.evaluation.coco``).
        num_classes: labels must lie in ``0..num_classes-1``; defaults to
            ``len(class_names)``, else to the largest label seen + 1.
        iou_threshold: minimum IoU of a true positive for the VOC metrics (COCO always
            averages over IoU 0.5:0.95).
        class_names: optional name of each class, used as the per-class keys.

    Returns:
        A dict: ``"metric"``, ``"num_images"``, ``"mAP"`` (the mean over classes that have
        ground truth), ``"per_class"`` ``{name or id: AP}`` with NaN for classes without
        (non-difficult) ground truth, which are also listed in
        ``"classes_without_ground_truth"``, ``"num_ground_truth"`` and ``"num_detections"``
        per class; VOC adds ``"iou_threshold"``, COCO adds ``"coco"``: ``{"AP", "AP50",
        "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
        "AR_medium", "AR_large"}`` (NaN where COCO has nothing to measure).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    dets, gts, num_classes, keys = _prepare(detections, ground_truth, num_classes, class_names, iou_threshold)
    result = {"metric": metric, "num_images": len(dets)}
    if metric == "coco":
        summary, ap, num_gt, num_dets = coco.evaluate(dets, gts, num_classes)
        result["mAP"] = summary["AP"]
        result["coco"] = summary
    else:
        ap, num_gt, num_dets = voc.evaluate(dets, gts, num_classes, iou_threshold, metric)
        measured = [a for a in ap if not math.isnan(a)]
        result["mAP"] = float(np.mean(measured)) if measured else float("nan")
        result["iou_threshold"] = float(iou_threshold)
    result["per_class"] = dict(zip(keys, ap))
    result["classes_without_ground_truth"] = [k for k, a in zip(keys, ap) if math.isnan(a)]
    result["num_ground_truth"] = dict(zip(keys, num_gt))
    result["num_detections"] = dict(zip(keys, num_dets))
    return result


def precision_recall_curves(detections, ground_truth, num_classes=None, iou_threshold=0.5, class_names=None):
    """Per class ``{name or id: (precision [D], recall [D])}`` after each of its D
    detections in descending score, matched by the VOC rules at ``iou_threshold`` (the
    curves the VOC APs are computed from); None for a class without (non-difficult)
    ground truth. Arguments as ``evaluate_detections``."""
    dets, gts, num_classes, keys = _prepare(detections, ground_truth, num_classes, class_names, iou_threshold)
    curves, _, _ = voc.class_curves(dets, gts, num_classes, iou_threshold)
    return dict(zip(keys, curves))


def _prepare(detections, ground_truth, num_classes, class_names, iou_threshold):
    """Validated ``(detections, ground_truth, num_classes, per-class keys)``."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    dets, gts = inputs.validate(detections, ground_truth)
    num_classes, keys = inputs.resolve_classes(num_classes, class_names, [x["labels"] for x in dets + gts])
    if num_classes == 0:
        raise ValueError("num_classes is 0: pass num_classes (or class_names) when there are no labels")
    inputs.check_label_range(dets, num_classes, "detections")
    inputs.check_label_range(gts, num_classes, "ground_truth")
    return dets, gts, num_classes, keys
