"""Training targets: anchor labels for the RPN, RoI labels for the head, the samplers, OHEM.

Everything is batched graph code over padded tensors and runs inside ``tf.function`` with
dynamic batch size and dynamic numbers of anchors, RoIs and ground-truth boxes (N may be 0).

Ground truth comes padded: ``gt_boxes`` float32 ``[B, N, 4]`` absolute yxyx, ``gt_labels``
int32 ``[B, N]`` with user classes ``0..C-1`` and ``-1`` for padding rows. Random functions
take ``seed``, an int32/int64 tensor of shape ``[2]``, and use stateless ops only, so a run
is reproducible and resumable (the model passes ``[base_seed, optimizer.iterations]``).
"""

import tensorflow as tf

from rfcn_tf import boxes


def _masked_iou(rows, gt_boxes, gt_labels, row_mask):
    """IoU ``[B, X, N]`` of rows (``[X, 4]`` or ``[B, X, 4]``) with the gt boxes.

    Entries of padded gt columns and of rows where ``row_mask`` ``[B, X]`` is False are -1,
    below any real IoU.
    """
    keep = row_mask[:, :, None] & (gt_labels >= 0)[:, None, :]
    return tf.where(keep, boxes.iou(rows, gt_boxes), -1.0)


def _match(iou, gt_boxes, gt_labels):
    """Best gt for every row of a masked IoU ``[B, X, N]``.

    Returns ``max_iou`` ``[B, X]`` (-1 where no real gt), the matched boxes ``[B, X, 4]``
    and the matched labels ``[B, X]``.
    """
    # A padding column keeps the reductions and the gathers defined when N = 0.
    iou = tf.pad(iou, [[0, 0], [0, 0], [0, 1]], constant_values=-1.0)
    gt_boxes = tf.pad(gt_boxes, [[0, 0], [0, 1], [0, 0]])
    gt_labels = tf.pad(gt_labels, [[0, 0], [0, 1]], constant_values=-1)
    max_iou = tf.reduce_max(iou, axis=-1)
    # The first column reaching the max: a tie-break that tf.argmax does not promise.
    columns = tf.range(tf.shape(iou)[-1])
    index = tf.reduce_min(tf.where(iou == max_iou[..., None], columns, tf.int32.max), axis=-1)
    return (
        max_iou,
        tf.gather(gt_boxes, index, batch_dims=1),
        tf.gather(gt_labels, index, batch_dims=1),
    )


def _descending_ranks(keys):
    """``[B, X]`` → int32 ``[B, X]``: each entry's position in its row sorted descending.

    Equal keys keep their index order, so the ranks are deterministic.
    """
    order = tf.argsort(keys, axis=-1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=-1, stable=True)


def sample_balanced(positive, negative, seed, num, positive_fraction, first_row=0):
    """Random balanced subset per row.

    positive, negative: bool ``[B, X]`` candidate masks (an entry in both counts as positive).
    Returns bool ``[B, X]``: at most ``floor(num * positive_fraction)`` positives, uniformly
    drawn, and negatives, uniformly drawn, filling the row up to ``num``. first_row: the
    global index of row 0 (a replica's first image): row b draws what row ``first_row + b``
    of a single batch would, so a replicated batch samples as the undivided one.
    """
    positive = tf.convert_to_tensor(positive, tf.bool)
    negative = tf.convert_to_tensor(negative, tf.bool) & ~positive
    # float64 keys: ties (broken by index) are practically impossible even with the offset.
    shape = tf.shape(positive)
    u = tf.random.stateless_uniform([first_row + shape[0], shape[1]], seed, dtype=tf.float64)[first_row:]
    # Sorted descending: the positives first, then the negatives, each group shuffled.
    keys = tf.where(positive, u + 2.0, tf.where(negative, u, -1.0))
    ranks = _descending_ranks(keys)

    num = tf.cast(num, tf.int32)
    fraction = tf.cast(positive_fraction, tf.float64)
    max_positives = tf.cast(tf.floor(tf.cast(num, tf.float64) * fraction), tf.int32)
    num_positive = tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True)
    num_negative = tf.reduce_sum(tf.cast(negative, tf.int32), axis=-1, keepdims=True)
    take_positive = tf.minimum(num_positive, max_positives)
    take_negative = tf.minimum(num_negative, num - take_positive)
    # Negatives occupy ranks num_positive .. num_positive + num_negative - 1.
    return (positive & (ranks < take_positive)) | (negative & (ranks < num_positive + take_negative))


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
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_labels = tf.convert_to_tensor(gt_labels, tf.int32)
    sizes = tf.cast(image_sizes, tf.float32)[:, None, :]  # [B, 1, 2]
    if allowed_border is None:
        centres = (anchors[None, :, :2] + anchors[None, :, 2:]) / 2.0
        inside = tf.reduce_all((centres >= 0.0) & (centres < sizes), axis=-1)  # [B, A]
    else:
        inside = tf.reduce_all(anchors[None, :, :2] >= -allowed_border, axis=-1) & tf.reduce_all(
            anchors[None, :, 2:] <= sizes + allowed_border, axis=-1
        )  # [B, A]

    iou = _masked_iou(anchors, gt_boxes, gt_labels, inside)
    max_iou, matched, _ = _match(iou, gt_boxes, gt_labels)
    best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, N]
    is_best = tf.reduce_any((iou == best_per_gt) & (best_per_gt > 0.0), axis=-1)
    positive = inside & ((max_iou >= positive_iou) | is_best)
    negative = inside & ~positive & (max_iou < negative_iou)

    sampled = sample_balanced(positive, negative, seed, batch_size, positive_fraction, first_row)
    labels = tf.where(sampled & positive, 1, tf.where(sampled, 0, -1))
    box_targets = tf.where((labels == 1)[..., None], boxes.encode(anchors, matched), 0.0)
    return labels, box_targets


def assign_roi_targets(rois, roi_valid, gt_boxes, gt_labels, positive_iou=0.5, box_std=boxes.BOX_STD):
    """Second-stage targets (Fast R-CNN rules), with the real gt boxes appended as RoIs.

    rois: ``[B, R, 4]`` yxyx; roi_valid: bool ``[B, R]``. Returns a dict over ``R + N`` rows
    (treated as constants: no gradient flows back into the RoIs):
    ``rois`` ``[B, R+N, 4]``; ``valid`` bool ``[B, R+N]``; ``labels`` int32 ``[B, R+N]``
    (matched gt class + 1 where max IoU ≥ ``positive_iou``, 0 background, -1 invalid);
    ``box_targets`` ``[B, R+N, 4]`` = ``boxes.encode(roi, matched gt, std=box_std)`` for
    foreground rows, zeros elsewhere.
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_labels = tf.convert_to_tensor(gt_labels, tf.int32)
    rois = tf.stop_gradient(tf.concat([tf.convert_to_tensor(rois, tf.float32), gt_boxes], axis=1))
    valid = tf.concat([tf.convert_to_tensor(roi_valid, tf.bool), gt_labels >= 0], axis=1)

    iou = _masked_iou(rois, gt_boxes, gt_labels, valid)
    max_iou, matched_boxes, matched_labels = _match(iou, gt_boxes, gt_labels)
    foreground = valid & (max_iou >= positive_iou)
    labels = tf.where(valid, tf.where(foreground, matched_labels + 1, 0), -1)
    box_targets = tf.where(foreground[..., None], boxes.encode(rois, matched_boxes, std=box_std), 0.0)
    return {"rois": rois, "valid": valid, "labels": labels, "box_targets": box_targets}


def ohem_select(per_roi_loss, valid, num):
    """Online hard example mining: weights for the ``num`` highest-loss valid RoIs.

    per_roi_loss: ``[B, R]`` (a constant here: no gradient); valid: bool ``[B, R]``.
    Returns float32 ``[B, R]``: 1 for the selected RoIs (all valid ones if fewer than
    ``num``), 0 otherwise. Equal losses: the lower index wins.
    """
    loss = tf.cast(tf.stop_gradient(per_roi_loss), tf.float32)
    valid = tf.convert_to_tensor(valid, tf.bool)
    ranks = _descending_ranks(tf.where(valid, loss, float("-inf")))
    return tf.cast(valid & (ranks < tf.cast(num, tf.int32)), tf.float32)


def random_roi_select(labels, valid, seed, num, positive_fraction=0.25, first_row=0):
    """The alternative to OHEM: a balanced random sample of RoIs.

    labels: int32 ``[B, R]`` (> 0 foreground, 0 background); valid: bool ``[B, R]``.
    Returns float32 weights ``[B, R]``, at most ``num`` ones per image.
    """
    valid = tf.convert_to_tensor(valid, tf.bool)
    selected = sample_balanced(
        valid & (labels > 0), valid & (labels == 0), seed, num, positive_fraction, first_row
    )
    return tf.cast(selected, tf.float32)
