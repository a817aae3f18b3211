"""Non-maximum suppression as the layers call it: the one place that picks TensorFlow's
kernels (under the TensorFlow backend: its exports, tf.distribute and speed depend on them)
or the neutral ``rfcn_tf.ops.nms`` (JAX, PyTorch), which keeps the same boxes.

The TensorFlow kernels run one image at a time: ``NonMaxSuppressionV4`` (padded output) is
TFLite's NON_MAX_SUPPRESSION_V4 and ONNX's NonMaxSuppression; a batch of known size is
unrolled rather than looped, since TFLite's built-ins cannot express ``tf.map_fn``'s tensor
lists.
"""

from rfcn_tf.ops import nms as neutral
from rfcn_tf.ops import on_tensorflow


def select(boxes, scores, max_output, iou_threshold, score_threshold):
    """``boxes [B, N, 4]`` yxyx, ``scores [B, N]`` → kept indices ``[B, max_output]`` int32
    (best first, zero padded) and their count ``[B]``; scores must be > ``score_threshold``,
    a kept box suppresses IoU > ``iou_threshold``."""
    if on_tensorflow():
        return nms_per_image(boxes, scores, max_output, iou_threshold, score_threshold)
    return neutral.non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold)


def select_per_class(boxes, scores, image_sizes, max_output, iou_threshold, score_threshold, portable=False):
    """Per-class NMS, ``max_output`` per class and in all: ``boxes [B, R, 4]`` (inside
    ``image_sizes [B, 2]``), ``scores [B, R, C]`` → ``(boxes [B, M, 4], scores [B, M],
    classes [B, M] int32, count [B] int32)``, best first, zero padded.

    TensorFlow: ``combined_non_max_suppression``, or with ``portable`` ``per_class_nms``
    (TFLite built-ins); elsewhere ``ops.nms.class_aware_non_max_suppression``.
    """
    if not on_tensorflow():
        return neutral.class_aware_non_max_suppression(
            boxes, scores, max_output, iou_threshold, score_threshold
        )
    if portable:
        return per_class_nms(boxes, scores, image_sizes, max_output, iou_threshold, score_threshold)
    import tensorflow as tf

    nmsed = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        scores,
        max_output_size_per_class=max_output,
        max_total_size=max_output,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        pad_per_class=False,
        clip_boxes=False,
    )
    classes = tf.cast(nmsed.nmsed_classes, tf.int32)
    return nmsed.nmsed_boxes, nmsed.nmsed_scores, classes, nmsed.valid_detections


def per_image(fn, args, signature):
    """``fn(*slices)`` on each image's slice of the ``[B, ...]`` tensors ``args``, results
    stacked: unrolled when B is known, ``tf.map_fn`` with ``signature`` (a tuple of
    ``TensorSpec``s, one per result) otherwise."""
    import tensorflow as tf

    batch = args[0].shape[0]
    if batch is None:
        return tf.map_fn(lambda a: fn(*a), tuple(args), fn_output_signature=signature)
    results = [fn(*(a[i] for a in args)) for i in range(batch)]
    return tuple(tf.stack([r[j] for r in results]) for j in range(len(signature)))


def nms(boxes, scores, max_output, iou_threshold, score_threshold):
    """One image: ``[N, 4]``, ``[N]`` → kept indices ``[max_output]`` (0-padded, best first)
    and their count; only scores above ``score_threshold`` are kept."""
    import tensorflow as tf

    keep, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes,
        scores=scores,
        max_output_size=max_output,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        pad_to_max_output_size=True,
    )
    return keep, count  # a plain tuple: tf.map_fn's signature does not match the namedtuple


def nms_per_image(boxes, scores, max_output, iou_threshold, score_threshold):
    """``[B, N, 4]``, ``[B, N]`` → kept indices ``[B, max_output]`` and counts ``[B]``.

    One C++ NMS kernel call per image: on CPU it is ~4× faster than the batched
    ``non_max_suppression_padded`` (a tiled algorithm written for accelerators) and keeps
    the same boxes.
    """
    import tensorflow as tf

    return per_image(
        lambda b, s: nms(b, s, max_output, iou_threshold, score_threshold),
        (boxes, scores),
        (tf.TensorSpec([max_output], tf.int32), tf.TensorSpec([], tf.int32)),
    )


def per_class_nms(boxes, scores, image_sizes, max_output, iou_threshold, score_threshold):
    """Per-class NMS as one NMS per image: ``boxes [B, R, 4]`` (inside ``image_sizes``),
    ``scores [B, R, C]`` → ``(boxes [B, M, 4], scores [B, M], classes [B, M] int32, count
    [B])``, best first, zero padded (``combined_non_max_suppression`` with ``max_output`` per
    class and in all).

    Every (RoI, class) pair becomes a candidate whose box is shifted by ``class × (longest
    side + 1)``, so boxes of different classes never overlap and one greedy pass suppresses
    within each class only.
    """
    import tensorflow as tf

    def one(image_boxes, image_scores, size):
        classes = tf.shape(image_scores)[1]
        flat = tf.reshape(image_scores, [-1])  # candidate r·C + c
        roi = tf.range(tf.size(flat)) // classes
        label = tf.range(tf.size(flat)) % classes
        candidates = tf.gather(image_boxes, roi)
        shift = tf.cast(label, tf.float32) * tf.cast(tf.reduce_max(size) + 1, tf.float32)
        keep, count = nms(candidates + shift[:, None], flat, max_output, iou_threshold, score_threshold)
        present = tf.range(max_output) < count
        kept_boxes = tf.where(present[:, None], tf.gather(candidates, keep), 0.0)
        kept_scores = tf.where(present, tf.gather(flat, keep), 0.0)
        kept_labels = tf.where(present, tf.gather(label, keep), 0)
        return kept_boxes, kept_scores, kept_labels, count

    return per_image(
        one,
        (boxes, scores, image_sizes),
        (
            tf.TensorSpec([max_output, 4], tf.float32),
            tf.TensorSpec([max_output], tf.float32),
            tf.TensorSpec([max_output], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )
