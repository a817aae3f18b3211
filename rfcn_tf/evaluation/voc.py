"""PASCAL VOC average precision: matching detections to ground truth, 11-point and area AP.

Boxes are absolute ``yxyx`` with continuous coordinates: area = (ymax − ymin)·(xmax − xmin),
without the devkit's +1. Matching follows the devkit: detections of a class in descending
score over all images; each is compared with the best-overlapping ground truth of its class
in its image; IoU ≥ threshold with a difficult object → ignored, with an object already
taken by a higher-scoring detection → false positive (duplicate).
"""

import numpy as np


def paired_iou(boxes1, boxes2):
    """IoU of ``boxes1[i]`` with ``boxes2[i]``: ``[P, 4]`` × ``[P, 4]`` → ``[P]``.

    0 where the union is empty (two degenerate boxes).
    """
    top_left = np.maximum(boxes1[:, :2], boxes2[:, :2])
    bottom_right = np.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area1 = np.prod(boxes1[:, 2:] - boxes1[:, :2], axis=-1)
    area2 = np.prod(boxes2[:, 2:] - boxes2[:, :2], axis=-1)
    union = area1 + area2 - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_overlaps(boxes, images, gt_boxes, gt_images):
    """The best-overlapping ground truth of each box among those of the same image.

    boxes ``[D, 4]`` with image ids ``[D]``; gt_boxes ``[G, 4]`` with image ids ``[G]`` in
    ascending order. Returns ``(index [D], iou [D])``: on ties the first ground truth;
    index −1 and IoU 0 where the image has none.
    """
    start = np.searchsorted(gt_images, images, side="left")
    count = np.searchsorted(gt_images, images, side="right") - start
    # Every (box, ground truth of its image) pair, grouped by box.
    pair_box = np.repeat(np.arange(len(boxes)), count)
    rank_in_image = np.arange(len(pair_box)) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = start[pair_box] + rank_in_image
    overlaps = paired_iou(boxes[pair_box], gt_boxes[pair_gt])

    best_iou = np.zeros(len(boxes))
    np.maximum.at(best_iou, pair_box, overlaps)
    best = np.flatnonzero(overlaps == best_iou[pair_box])
    boxes_with_gt, first = np.unique(pair_box[best], return_index=True)
    best_gt = np.full(len(boxes), -1)
    best_gt[boxes_with_gt] = pair_gt[best[first]]
    return best_gt, best_iou


def match(detections, ground_truth, iou_threshold):
    """TP/FP flags of one class's detections in descending score order.

    detections: ``{"boxes": [D, 4], "scores": [D], "image": [D]}``; ground_truth:
    ``{"boxes": [G, 4], "difficult": [G], "image": [G] ascending}``. Returns ``(tp, fp)``,
    bool ``[D']`` each, where the detections matched to a difficult object are dropped.
    """
    order = np.argsort(-detections["scores"], kind="stable")  # ties keep input order
    best_gt, best_iou = best_overlaps(
        detections["boxes"][order],
        detections["image"][order],
        ground_truth["boxes"],
        ground_truth["image"],
    )
    hit = best_iou >= iou_threshold
    ignored = np.zeros(len(order), bool)
    ignored[hit] = ground_truth["difficult"][best_gt[hit]]
    # An object goes to the first (highest-scoring) detection that hits it.
    hits = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(best_gt[hits], return_index=True)
    tp = np.zeros(len(order), bool)
    tp[hits[first]] = True
    return tp[~ignored], ~tp[~ignored]


def precision_recall(tp, fp, num_positives):
    """Cumulative precision and recall ``[D]`` each from TP/FP flags in score order."""
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
    return tp_sum / np.maximum(tp_sum + fp_sum, 1), tp_sum / num_positives


def ap_11_point(precision, recall):
    """VOC2007: mean over t = 0, 0.1 … 1 of the max precision at recall ≥ t (0 if none)."""
    # k / 10 rather than arange(0, 1.1, 0.1): the latter's 0.30000000000000004 would miss
    # a recall of exactly 3/10.
    thresholds = np.arange(11) / 10
    reached = recall[None, :] >= thresholds[:, None]
    return float(np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0).mean())


def ap_area(precision, recall):
    """VOC2010+: area under the precision envelope (max precision at any higher recall)."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


AP_FUNCTIONS = {"voc07": ap_11_point, "voc": ap_area}


def evaluate(detections, ground_truth, num_classes, iou_threshold, metric):
    """Per-class VOC AP of validated per-image dicts (see ``inputs.validate``).

    metric: ``"voc07"`` or ``"voc"``. Returns ``(ap, num_positives, num_detections)``,
    lists of length num_classes; AP is NaN for a class without non-difficult ground truth.
    """
    curves, num_positives, num_detections = class_curves(detections, ground_truth, num_classes, iou_threshold)
    ap = [float("nan") if curve is None else AP_FUNCTIONS[metric](*curve) for curve in curves]
    return ap, num_positives, num_detections


def class_curves(detections, ground_truth, num_classes, iou_threshold):
    """Per class the ``(precision [D], recall [D])`` of its detections in descending score
    (``precision_recall``), None for a class without non-difficult ground truth →
    ``(curves, num_positives, num_detections)``, lists of length num_classes."""
    dets = _concatenate(detections, ("boxes", "scores", "labels"))
    gts = _concatenate(ground_truth, ("boxes", "labels", "difficult"))
    curves, num_positives, num_detections = [], [], []
    for label in range(num_classes):
        class_dets = {k: v[dets["labels"] == label] for k, v in dets.items()}
        class_gts = {k: v[gts["labels"] == label] for k, v in gts.items()}
        positives = int(np.sum(~class_gts["difficult"]))
        num_positives.append(positives)
        num_detections.append(len(class_dets["scores"]))
        if positives == 0:
            curves.append(None)
            continue
        tp, fp = match(class_dets, class_gts, iou_threshold)
        curves.append(precision_recall(tp, fp, positives))
    return curves, num_positives, num_detections


def _concatenate(items, fields):
    """Per-image dicts → one dict of arrays over all images, plus ``"image"`` ids."""
    merged = {f: np.concatenate([item[f] for item in items]) for f in fields}
    merged["image"] = np.repeat(np.arange(len(items)), [len(item["labels"]) for item in items])
    return merged
