"""Training targets: anchor labels for the RPN, RoI labels for the head, the samplers, OHEM.

Everything is batched code over padded tensors in ``keras.ops``: it runs inside
``tf.function`` with dynamic batch size and dynamic numbers of anchors, RoIs and
ground-truth boxes (N may be 0), and inside a jitted JAX step with static ones. No sort:
selections read thresholds off ``top_k`` values, so ties are broken by index on every
backend.

Ground truth comes padded: ``gt_boxes`` float32 ``[B, N, 4]`` absolute yxyx, ``gt_labels``
int32 ``[B, N]`` with user classes ``0..C-1`` and ``-1`` for padding rows. Random functions
take ``seed``, int ``[2]``, and draw from ``rfcn_tf.ops.random`` (stateless, the same bits
on every backend), so a run is reproducible and resumable (the model passes
``[base_seed, optimizer.iterations]``).
"""

import math

import keras
import numpy as np
from keras import ops

from rfcn_tf import boxes
from rfcn_tf.config import RFCNConfig
from rfcn_tf.ops import batched_gather
from rfcn_tf.ops import random as counter_random

_INT32_MIN = -(2**31)


def _pad_one(x, axis, value=0):
    """``x`` with one more entry ``value`` at the end of ``axis``."""
    widths = [[0, 0]] * len(ops.shape(x))
    widths[axis] = [0, 1]
    return ops.pad(x, widths, constant_values=value)


def _masked_iou(rows, gt_boxes, gt_labels, row_mask):
    """IoU of rows (``[X, 4]`` or ``[B, X, 4]``) with the gt boxes plus one padding gt.

    The padding gt keeps reductions over gt and gathers defined when N = 0. Returns the
    IoU ``[B, X, N+1]`` and the padded ``gt_boxes`` ``[B, N+1, 4]`` and ``gt_labels``
    ``[B, N+1]``. Entries of padding gt columns and of rows where ``row_mask`` ``[B, X]``
    is False are -1, below any real IoU.
    """
    gt_boxes = _pad_one(gt_boxes, 1)
    gt_labels = _pad_one(gt_labels, 1, -1)
    keep = ops.logical_and(row_mask[:, :, None], (gt_labels >= 0)[:, None, :])
    return ops.where(keep, boxes.iou(rows, gt_boxes), -1.0), gt_boxes, gt_labels


def _match(iou, gt_boxes, gt_labels):
    """Best gt for every row of a masked IoU ``[B, X, N+1]`` (``_masked_iou``'s outputs).

    Returns ``max_iou`` ``[B, X]`` (-1 where no real gt), the matched boxes ``[B, X, 4]``
    and the matched labels ``[B, X]``.
    """
    max_iou = ops.max(iou, axis=-1)
    # The first column reaching the max: a tie-break that argmax does not promise everywhere.
    columns = ops.arange(ops.shape(iou)[-1], dtype="int32")
    index = ops.min(ops.where(iou == max_iou[..., None], columns, 2**31 - 1), axis=-1)
    return max_iou, batched_gather(gt_boxes, index), batched_gather(gt_labels, index)


def _count(num):
    """A sample size as a Python int where it is one (a static ``top_k`` size under JAX),
    else an int32 tensor (TensorFlow takes those too)."""
    return int(num) if isinstance(num, (int, np.integer)) else ops.cast(num, "int32")


def _min(a, b):
    """``min`` of two sizes, Python ints (JAX, static shapes) or scalar tensors (TF)."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return ops.minimum(ops.cast(a, "int32"), ops.cast(b, "int32"))


def _kth_largest(keys, k, index, fill):
    """``keys`` ``[B, X]`` → ``[B, 1]``: entry ``index`` ``[B, 1]`` (0-based, clipped to
    ``0 .. k-1``) of each row's keys in descending order; ``k`` bounds the indices read.

    A column of ``fill`` (≤ every key) keeps it defined for ``X = 0``.
    """
    keys = _pad_one(keys, 1, fill)
    k = _min(k, ops.shape(keys)[-1])
    values, _ = ops.top_k(keys, k)
    return ops.take_along_axis(values, ops.clip(index, 0, k - 1), axis=-1)


def _largest_members(keys, member, take, bound):
    """Bool ``[B, X]``: in each row the ``take`` ``[B, 1]`` members (bool ``[B, X]``) with
    the largest int32 ``keys``, which must be distinct within a row; ``take ≤ bound``."""
    keys = ops.where(member, keys, _INT32_MIN)
    threshold = _kth_largest(keys, bound, take - 1, _INT32_MIN)
    return ops.logical_and(ops.logical_and(member, keys >= threshold), take > 0)


def _floor_product(num, fraction):
    """``floor(num · fraction)`` as in float64 (float32 under JAX, which has no float64
    by default, when either is a tensor)."""
    if isinstance(num, int) and isinstance(fraction, (int, float)):
        return math.floor(num * fraction)
    dtype = "float32" if keras.backend.backend() == "jax" else "float64"
    product = ops.cast(num, dtype) * ops.cast(fraction, dtype)
    return ops.cast(ops.floor(product), "int32")


def sample_balanced(positive, negative, seed, num, positive_fraction, first_row=0):
    """Random balanced subset per row.

    positive, negative: bool ``[B, X]`` candidate masks (an entry in both counts as positive).
    Returns bool ``[B, X]``: at most ``floor(num * positive_fraction)`` positives, uniformly
    drawn without replacement, and negatives, uniformly drawn, filling the row up to
    ``num``. num: a Python int under JAX (it sizes a ``top_k``). first_row: the global
    index of row 0 (a replica's first image): row b draws what row ``first_row + b`` of a
    single batch would, so a replicated batch samples as the undivided one.
    """
    positive = ops.cast(positive, "bool")
    negative = ops.logical_and(ops.cast(negative, "bool"), ops.logical_not(positive))
    shape = ops.shape(positive)
    # Distinct within a row: the members with the largest bits are a uniform draw.
    bits = counter_random.random_bits(seed, (shape[0], shape[1]), first_row)

    num = _count(num)
    max_positives = _floor_product(num, positive_fraction)
    num_positive = ops.sum(ops.cast(positive, "int32"), axis=-1, keepdims=True)
    num_negative = ops.sum(ops.cast(negative, "int32"), axis=-1, keepdims=True)
    take_positive = ops.minimum(num_positive, max_positives)
    take_negative = ops.minimum(num_negative, num - take_positive)
    return ops.logical_or(
        _largest_members(bits, positive, take_positive, num),
        _largest_members(bits, negative, take_negative, num),
    )


def assign_anchor_targets(
    anchors,
    gt_boxes,
    gt_labels,
    image_sizes,
    seed,
    positive_iou=0.7,
    negative_iou=0.3,
    batch_size=256,
    positive_fraction=0.5,
    allowed_border=0.0,
    first_row=0,
):
    """RPN targets (Faster R-CNN rules).

    anchors: ``[A, 4]`` yxyx, shared by the batch. image_sizes: int32 ``[B, 2]`` true (h, w).
    Anchors reaching more than ``allowed_border`` pixels beyond the true image are ignored
    (Faster R-CNN: 0); with ``allowed_border=None`` every anchor whose centre lies in the
    image takes part (torchvision's choice, which small images need: most of their large
    anchors cross the border). Positive: max IoU over real gt
    ≥ ``positive_iou``, or among the highest-IoU inside anchors of some gt (all tied ones,
    if that IoU > 0). Negative: otherwise max IoU < ``negative_iou``. Then at most
    ``batch_size`` per image are sampled, at most ``positive_fraction`` of them positive
    (``first_row`` as ``sample_balanced``'s).

    Returns ``labels`` int32 ``[B, A]`` (1 positive, 0 negative, -1 ignored or not sampled)
    and ``box_targets`` float32 ``[B, A, 4]``: ``boxes.encode(anchor, best gt)`` for
    positives (the anchor's own highest-IoU gt), zeros elsewhere.
    """
    anchors = ops.cast(anchors, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_labels = ops.cast(gt_labels, "int32")
    sizes = ops.cast(image_sizes, "float32")[:, None, :]  # [B, 1, 2]
    if allowed_border is None:
        centres = (anchors[None, :, :2] + anchors[None, :, 2:]) / 2.0
        inside = ops.all(ops.logical_and(centres >= 0.0, centres < sizes), axis=-1)  # [B, A]
    else:
        inside = ops.logical_and(
            ops.all(anchors[None, :, :2] >= -allowed_border, axis=-1),
            ops.all(anchors[None, :, 2:] <= sizes + allowed_border, axis=-1),
        )  # [B, A]

    iou, padded_boxes, padded_labels = _masked_iou(anchors, gt_boxes, gt_labels, inside)
    max_iou, matched, _ = _match(iou, padded_boxes, padded_labels)
    best_per_gt = ops.max(iou, axis=1, keepdims=True)  # [B, 1, N+1]
    is_best = ops.any(ops.logical_and(iou == best_per_gt, best_per_gt > 0.0), axis=-1)
    positive = ops.logical_and(inside, ops.logical_or(max_iou >= positive_iou, is_best))
    negative = ops.logical_and(ops.logical_and(inside, ops.logical_not(positive)), max_iou < negative_iou)

    sampled = sample_balanced(positive, negative, seed, batch_size, positive_fraction, first_row)
    labels = ops.where(ops.logical_and(sampled, positive), 1, ops.where(sampled, 0, -1))
    labels = ops.cast(labels, "int32")
    box_targets = ops.where((labels == 1)[..., None], boxes.encode(anchors, matched), 0.0)
    return labels, box_targets


def assign_roi_targets(rois, roi_valid, gt_boxes, gt_labels, positive_iou=0.5, box_std=RFCNConfig.box_std):
    """Second-stage targets (Fast R-CNN rules), with the real gt boxes appended as RoIs.

    rois: ``[B, R, 4]`` yxyx; roi_valid: bool ``[B, R]``. Returns a dict over ``R + N`` rows
    (treated as constants: no gradient flows back into the RoIs):
    ``rois`` ``[B, R+N, 4]``; ``valid`` bool ``[B, R+N]``; ``labels`` int32 ``[B, R+N]``
    (matched gt class + 1 where max IoU ≥ ``positive_iou``, 0 background, -1 invalid);
    ``box_targets`` ``[B, R+N, 4]`` = ``boxes.encode(roi, matched gt, std=box_std)`` for
    foreground rows, zeros elsewhere.
    """
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_labels = ops.cast(gt_labels, "int32")
    rois = ops.stop_gradient(ops.concatenate([ops.cast(rois, "float32"), gt_boxes], axis=1))
    valid = ops.concatenate([ops.cast(roi_valid, "bool"), gt_labels >= 0], axis=1)

    iou, padded_boxes, padded_labels = _masked_iou(rois, gt_boxes, gt_labels, valid)
    max_iou, matched_boxes, matched_labels = _match(iou, padded_boxes, padded_labels)
    foreground = ops.logical_and(valid, max_iou >= positive_iou)
    labels = ops.cast(ops.where(valid, ops.where(foreground, matched_labels + 1, 0), -1), "int32")
    box_targets = ops.where(foreground[..., None], boxes.encode(rois, matched_boxes, std=box_std), 0.0)
    return {"rois": rois, "valid": valid, "labels": labels, "box_targets": box_targets}


def ohem_select(per_roi_loss, valid, num):
    """Online hard example mining: weights for the ``num`` highest-loss valid RoIs.

    per_roi_loss: ``[B, R]`` (a constant here: no gradient); valid: bool ``[B, R]``;
    num: a Python int under JAX. Returns float32 ``[B, R]``: 1 for the selected RoIs (all
    valid ones if fewer than ``num``), 0 otherwise. Equal losses: the lower index wins.
    """
    loss = ops.cast(ops.stop_gradient(per_roi_loss), "float32")
    valid = ops.cast(valid, "bool")
    num = _count(num)
    keys = ops.where(valid, loss, float("-inf"))
    # The num-th largest key; every key above it is in, and of the keys equal to it the
    # first ones (by index) until num are reached.
    last = ops.zeros_like(keys[:, :1], dtype="int32") + (num - 1)
    threshold = _kth_largest(keys, num, last, float("-inf"))
    above = keys > threshold
    tied = keys == threshold
    room = num - ops.sum(ops.cast(above, "int32"), axis=-1, keepdims=True)
    tie_rank = ops.cumsum(ops.cast(tied, "int32"), axis=-1)  # 1-based among the tied
    selected = ops.logical_or(above, ops.logical_and(tied, tie_rank <= room))
    return ops.cast(ops.logical_and(valid, selected), "float32")


def random_roi_select(labels, valid, seed, num, positive_fraction=0.25, first_row=0):
    """The alternative to OHEM: a balanced random sample of RoIs.

    labels: int32 ``[B, R]`` (> 0 foreground, 0 background); valid: bool ``[B, R]``.
    Returns float32 weights ``[B, R]``, at most ``num`` ones per image.
    """
    valid = ops.cast(valid, "bool")
    selected = sample_balanced(
        ops.logical_and(valid, labels > 0),
        ops.logical_and(valid, labels == 0),
        seed,
        num,
        positive_fraction,
        first_row,
    )
    return ops.cast(selected, "float32")
