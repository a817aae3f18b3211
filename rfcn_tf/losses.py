"""Losses of the RPN and of the R-FCN head: cross-entropy + smooth-L1.

Pure functions over the padded targets of ``rfcn_tf.targets``; they return global means
over the batch (or per-RoI values) and leave the division by the replica count and the
weighting λ to the caller. Nothing sampled gives a loss of 0, never NaN.
"""

import keras
import tensorflow as tf


def smooth_l1(diff, beta=1.0):
    """Elementwise smooth-L1 (Fast R-CNN): ``0.5·x²/β`` if ``|x| < β`` else ``|x| − 0.5·β``.

    That is Keras's Huber loss with ``delta = β``, divided by ``β``.
    """
    diff = tf.convert_to_tensor(diff)
    # huber() averages over the last axis: a trailing axis of size 1 keeps it elementwise.
    huber = keras.losses.huber(tf.zeros_like(diff)[..., None], diff[..., None], delta=beta)
    return huber / beta


def _box_loss(deltas, targets):
    """``[..., 4]`` × ``[..., 4]`` → ``[...]``: smooth-L1 summed over the 4 coordinates."""
    return tf.reduce_sum(smooth_l1(tf.cast(deltas, tf.float32) - targets), axis=-1)


def rpn_losses(objectness_logits, deltas, labels, box_targets):
    """RPN losses, both normalised by the number of sampled anchors in the batch.

    objectness_logits ``[B, A]``; deltas, box_targets ``[B, A, 4]``; labels int32 ``[B, A]``
    (1 positive, 0 negative, -1 not sampled). Returns scalars ``(cls_loss, box_loss)``:
    sigmoid cross-entropy over sampled anchors, smooth-L1 over positive ones.
    """
    sampled = labels >= 0
    positive = labels > 0
    num_sampled = tf.reduce_sum(tf.cast(sampled, tf.float32))
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(positive, tf.float32),
        logits=tf.cast(objectness_logits, tf.float32),
    )
    cls_loss = tf.reduce_sum(tf.where(sampled, cross_entropy, 0.0))
    box_loss = tf.reduce_sum(tf.where(positive, _box_loss(deltas, box_targets), 0.0))
    return (
        tf.math.divide_no_nan(cls_loss, num_sampled),
        tf.math.divide_no_nan(box_loss, num_sampled),
    )


def per_roi_losses(class_logits, box_deltas, labels, box_targets):
    """Per-RoI head losses.

    class_logits ``[B, R, C+1]`` (0 = background); box_deltas, box_targets ``[B, R, 4]``
    (class-agnostic); labels int32 ``[B, R]`` (-1 invalid). Returns ``(cls, box)``, each
    ``[B, R]``: softmax cross-entropy, and smooth-L1 summed over the coordinates for
    foreground RoIs (0 for background); both 0 for invalid RoIs.
    """
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(labels, 0), logits=tf.cast(class_logits, tf.float32)
    )
    cls = tf.where(labels >= 0, cross_entropy, 0.0)
    box = tf.where(labels > 0, _box_loss(box_deltas, box_targets), 0.0)
    return cls, box


def head_losses(class_logits, box_deltas, labels, box_targets, weights):
    """Head losses over the RoIs chosen by OHEM or the random sampler.

    Inputs as ``per_roi_losses`` plus ``weights`` float ``[B, R]``. Returns scalars
    ``(cls_loss, box_loss)``: the weighted sums divided by the total weight (0 if none).
    """
    cls, box = per_roi_losses(class_logits, box_deltas, labels, box_targets)
    weights = tf.cast(weights, tf.float32)
    total = tf.reduce_sum(weights)
    return (
        tf.math.divide_no_nan(tf.reduce_sum(weights * cls), total),
        tf.math.divide_no_nan(tf.reduce_sum(weights * box), total),
    )
