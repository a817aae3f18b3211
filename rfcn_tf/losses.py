"""Losses of the RPN and of the R-FCN head: cross-entropy + smooth-L1.

Pure functions over the padded targets of ``rfcn_tf.targets``, in ``keras.ops``; they
return global means over the batch (or per-RoI values) and leave the division by the
replica count and the weighting λ to the caller. Nothing sampled gives a loss of 0 and
finite gradients, never NaN.
"""

import keras
from keras import ops


def smooth_l1(diff, beta=1.0):
    """Elementwise smooth-L1 (Fast R-CNN): ``0.5·x²/β`` if ``|x| < β`` else ``|x| − 0.5·β``.

    That is Keras's Huber loss with ``delta = β``, divided by ``β``.
    """
    diff = ops.convert_to_tensor(diff)
    # huber() averages over the last axis: a trailing axis of size 1 keeps it elementwise.
    huber = keras.losses.huber(ops.zeros_like(diff)[..., None], diff[..., None], delta=beta)
    return huber / beta


def _box_loss(deltas, targets):
    """``[..., 4]`` × ``[..., 4]`` → ``[...]``: smooth-L1 summed over the 4 coordinates."""
    return ops.sum(smooth_l1(ops.cast(deltas, "float32") - ops.cast(targets, "float32")), axis=-1)


def rpn_losses(objectness_logits, deltas, labels, box_targets):
    """RPN losses, both normalised by the number of sampled anchors in the batch.

    objectness_logits ``[B, A]``; deltas, box_targets ``[B, A, 4]``; labels int32 ``[B, A]``
    (1 positive, 0 negative, -1 not sampled). Returns scalars ``(cls_loss, box_loss)``:
    sigmoid cross-entropy over sampled anchors, smooth-L1 over positive ones.
    """
    labels = ops.convert_to_tensor(labels)
    sampled = labels >= 0
    positive = labels > 0
    num_sampled = ops.sum(ops.cast(sampled, "float32"))
    cross_entropy = ops.binary_crossentropy(
        ops.cast(positive, "float32"), ops.cast(objectness_logits, "float32"), from_logits=True
    )
    cls_loss = ops.sum(ops.where(sampled, cross_entropy, 0.0))
    box_loss = ops.sum(ops.where(positive, _box_loss(deltas, box_targets), 0.0))
    return ops.divide_no_nan(cls_loss, num_sampled), ops.divide_no_nan(box_loss, num_sampled)


def per_roi_losses(class_logits, box_deltas, labels, box_targets):
    """Per-RoI head losses.

    class_logits ``[B, R, C+1]`` (0 = background); box_deltas, box_targets ``[B, R, 4]``
    (class-agnostic); labels int32 ``[B, R]`` (-1 invalid). Returns ``(cls, box)``, each
    ``[B, R]``: softmax cross-entropy, and smooth-L1 summed over the coordinates for
    foreground RoIs (0 for background); both 0 for invalid RoIs.
    """
    labels = ops.convert_to_tensor(labels)
    cross_entropy = ops.sparse_categorical_crossentropy(
        ops.maximum(labels, 0), ops.cast(class_logits, "float32"), from_logits=True
    )
    cls = ops.where(labels >= 0, cross_entropy, 0.0)
    box = ops.where(labels > 0, _box_loss(box_deltas, box_targets), 0.0)
    return cls, box


def head_losses(class_logits, box_deltas, labels, box_targets, weights):
    """Head losses over the RoIs chosen by OHEM or the random sampler.

    Inputs as ``per_roi_losses`` plus ``weights`` float ``[B, R]``. Returns scalars
    ``(cls_loss, box_loss)``: the weighted sums divided by the total weight (0 if none).
    """
    cls, box = per_roi_losses(class_logits, box_deltas, labels, box_targets)
    weights = ops.cast(weights, "float32")
    total = ops.sum(weights)
    return (
        ops.divide_no_nan(ops.sum(weights * cls), total),
        ops.divide_no_nan(ops.sum(weights * box), total),
    )
