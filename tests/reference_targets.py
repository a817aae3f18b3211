"""Plain-numpy, loop-based reference implementations of the targets and losses.

Written from the definitions (Faster R-CNN / Fast R-CNN / R-FCN), one image at a time,
in float64, independent of ``rfcn_tf``. Boxes are absolute yxyx.
"""

import math

import numpy as np


def iou(box_a, box_b):
    """IoU of two yxyx boxes (0 when the union is empty)."""
    ih = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    iw = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    inter = max(ih, 0.0) * max(iw, 0.0)
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def encode(anchor, box, std=(1.0, 1.0, 1.0, 1.0)):
    """(dy, dx, dh, dw) = ((cy−cya)/ha, (cx−cxa)/wa, log(h/ha), log(w/wa)) / std."""
    ha, wa = anchor[2] - anchor[0], anchor[3] - anchor[1]
    h, w = box[2] - box[0], box[3] - box[1]
    cya, cxa = anchor[0] + 0.5 * ha, anchor[1] + 0.5 * wa
    cy, cx = box[0] + 0.5 * h, box[1] + 0.5 * w
    deltas = [(cy - cya) / ha, (cx - cxa) / wa, math.log(h / ha), math.log(w / wa)]
    return np.array([d / s for d, s in zip(deltas, std)])


def _real_gt(gt_boxes, gt_labels):
    return [(box, label) for box, label in zip(gt_boxes, gt_labels) if label != -1]


def anchor_labels(
    anchors, gt_boxes, gt_labels, image_size, positive_iou=0.7, negative_iou=0.3, allowed_border=0.0
):
    """One image's RPN labelling before sampling → (labels [A] in {1, 0, −1}, targets [A, 4])."""
    height, width = image_size
    gts = _real_gt(gt_boxes, gt_labels)
    num = len(anchors)
    if allowed_border is None:
        inside = [0 <= (a[0] + a[2]) / 2 < height and 0 <= (a[1] + a[3]) / 2 < width for a in anchors]
    else:
        b = allowed_border
        inside = [a[0] >= -b and a[1] >= -b and a[2] <= height + b and a[3] <= width + b for a in anchors]
    overlaps = np.zeros((num, len(gts)))
    for i in range(num):
        for j, (box, _) in enumerate(gts):
            overlaps[i, j] = iou(anchors[i], box)

    labels = np.full(num, -1)
    targets = np.zeros((num, 4))
    for i in range(num):
        if not inside[i]:
            continue
        best = max(overlaps[i]) if gts else 0.0
        if best < negative_iou:
            labels[i] = 0
        if best >= positive_iou:
            labels[i] = 1
    # Each gt's best inside anchor(s), when that overlap is > 0, is positive too.
    for j in range(len(gts)):
        best = max((overlaps[i, j] for i in range(num) if inside[i]), default=0.0)
        if best > 0:
            for i in range(num):
                if inside[i] and overlaps[i, j] == best:
                    labels[i] = 1
    for i in range(num):
        if labels[i] == 1:
            targets[i] = encode(anchors[i], gts[int(np.argmax(overlaps[i]))][0])
    return labels, targets


def roi_targets(rois, valid, gt_boxes, gt_labels, positive_iou=0.5, std=(0.1, 0.1, 0.2, 0.2)):
    """One image's head targets, real gt appended → dict of rois/valid/labels/box_targets."""
    gts = _real_gt(gt_boxes, gt_labels)
    all_rois = list(rois) + list(gt_boxes)
    all_valid = list(valid) + [label != -1 for label in gt_labels]
    labels = np.full(len(all_rois), -1)
    box_targets = np.zeros((len(all_rois), 4))
    for i, (roi, ok) in enumerate(zip(all_rois, all_valid)):
        if not ok:
            continue
        overlaps = [iou(roi, box) for box, _ in gts]
        labels[i] = 0
        if overlaps and max(overlaps) >= positive_iou:
            box, label = gts[int(np.argmax(overlaps))]
            labels[i] = label + 1
            box_targets[i] = encode(roi, box, std)
    return {
        "rois": np.array(all_rois).reshape(-1, 4),
        "valid": np.array(all_valid, bool),
        "labels": labels,
        "box_targets": box_targets,
    }


def ohem(losses, valid, num):
    """One image: weight 1 for the ``num`` valid RoIs with the highest loss (lower index on ties)."""
    candidates = sorted((i for i in range(len(losses)) if valid[i]), key=lambda i: (-losses[i], i))
    weights = np.zeros(len(losses))
    for i in candidates[:num]:
        weights[i] = 1.0
    return weights


def smooth_l1(x, beta=1.0):
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def _box_l1(deltas, targets):
    return sum(smooth_l1(d - t) for d, t in zip(deltas, targets))


def rpn_losses(logits, deltas, labels, box_targets):
    """Batch of RPN outputs → (cls, box), both divided by the number of sampled anchors."""
    cls = box = 0.0
    count = 0
    for b in range(len(labels)):
        for a in range(len(labels[b])):
            label = labels[b][a]
            if label < 0:
                continue
            count += 1
            p = 1.0 / (1.0 + math.exp(-logits[b][a]))
            cls += -math.log(p) if label == 1 else -math.log(1.0 - p)
            if label == 1:
                box += _box_l1(deltas[b][a], box_targets[b][a])
    return (cls / count, box / count) if count else (0.0, 0.0)


def per_roi_losses(class_logits, box_deltas, labels, box_targets):
    """Batch → (cls [B, R], box [B, R]) per RoI."""
    batch, rois = len(labels), len(labels[0])
    cls = np.zeros((batch, rois))
    box = np.zeros((batch, rois))
    for b in range(batch):
        for r in range(rois):
            label = labels[b][r]
            if label < 0:
                continue
            logits = class_logits[b][r]
            log_sum = math.log(sum(math.exp(z - max(logits)) for z in logits)) + max(logits)
            cls[b, r] = log_sum - logits[label]
            if label > 0:
                box[b, r] = _box_l1(box_deltas[b][r], box_targets[b][r])
    return cls, box


def head_losses(class_logits, box_deltas, labels, box_targets, weights):
    cls, box = per_roi_losses(class_logits, box_deltas, labels, box_targets)
    total = float(np.sum(weights))
    if total == 0:
        return 0.0, 0.0
    return float(np.sum(weights * cls)) / total, float(np.sum(weights * box)) / total


# The counter-based generator (rfcn_tf.ops.random), in numpy uint32 arithmetic, where
# wrap-around and logical shifts are the language's own.
def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def random_bits(seed, rows, columns, first_row=0):
    """int32 ``[rows, columns]``: ``mix(mix(mix(key + row) + column))`` with
    ``key = mix(mix(seed0 ^ 0x9E3779B9) + seed1)``, row counted from ``first_row``."""
    with np.errstate(over="ignore"):
        s0, s1 = (np.uint32(int(v) % 2**32) for v in seed)
        key = _mix32(_mix32(s0 ^ np.uint32(0x9E3779B9)) + s1)
        row = (np.arange(rows, dtype=np.uint64) + first_row).astype(np.uint32)
        row_key = _mix32(key + row)[:, None]
        bits = _mix32(_mix32(row_key + np.arange(columns, dtype=np.uint32)[None, :]))
    return bits.view(np.int32)


def sample_balanced(positive, negative, bits, num, positive_fraction):
    """One row: the positives with the largest ``bits`` (at most floor(num·fraction)), then
    the negatives with the largest bits up to ``num`` in all → bool mask."""
    negative = negative & ~positive
    max_positive = math.floor(num * positive_fraction)
    by_bits = sorted(range(len(bits)), key=lambda i: -int(bits[i]))
    chosen_pos = [i for i in by_bits if positive[i]][:max_positive]
    chosen_neg = [i for i in by_bits if negative[i]][: num - len(chosen_pos)]
    mask = np.zeros(len(bits), bool)
    mask[chosen_pos + chosen_neg] = True
    return mask


MAX_LOG_SCALE = math.log(1000.0 / 16.0)  # a box at most 1000/16 times its anchor


def decode(anchor, deltas, std=(1.0, 1.0, 1.0, 1.0), max_log_scale=MAX_LOG_SCALE):
    """Inverse of ``encode``, the log-size deltas clamped at ``max_log_scale`` first."""
    dy, dx, dh, dw = (d * s for d, s in zip(deltas, std))
    dh, dw = min(dh, max_log_scale), min(dw, max_log_scale)
    ha, wa = anchor[2] - anchor[0], anchor[3] - anchor[1]
    cy, cx = anchor[0] + 0.5 * ha + dy * ha, anchor[1] + 0.5 * wa + dx * wa
    h, w = ha * math.exp(dh), wa * math.exp(dw)
    return np.array([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w])


def anchor_grid(height, width, stride, scales, ratios):
    """Anchors ordered (y, x, ratio, scale): area scale², height/width = ratio, centred on
    the cell centre ``(stride·(y + ½), stride·(x + ½))``."""
    out = []
    for y in range(height):
        for x in range(width):
            cy, cx = stride * (y + 0.5), stride * (x + 0.5)
            for ratio in ratios:
                for scale in scales:
                    h, w = scale * math.sqrt(ratio), scale / math.sqrt(ratio)
                    out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)
