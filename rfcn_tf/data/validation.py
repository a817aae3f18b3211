"""Checks every example passes before the pipeline: boxes cleaned, labels checked, RGB.

Boxes: inverted coordinates are sorted, the box is clipped to the image, and only a
box with zero height or width after that is dropped. Nothing is dropped silently:

- the folder readers clean against the image size their annotations declare and log
  the drops with the image ids at once (``logging`` logger ``rfcn_tf.data``);
- :func:`validate_examples` cleans again against the decoded image (the only check a
  TFDS source gets) and records every drop in a process-wide table keyed by
  ``image_id``, so repeated epochs do not count twice (an id seen in two datasets keeps
  its last count). :func:`dropped_boxes` returns the table and
  :func:`log_dropped_boxes` logs it: call that after training or evaluation.

A graph function cannot call Python ``logging`` without ``tf.py_function``; the table
(a ``tf.lookup.experimental.MutableHashTable``) is what lets the count leave the graph.
"""

import logging

import tensorflow as tf

logger = logging.getLogger("rfcn_tf.data")

_dropped = []  # holds the table once created: lazily, so importing creates no TF state


def clean_boxes(boxes, height, width):
    """Sort, clip and test boxes. boxes ``[..., 4]`` yxyx pixels; height/width broadcast.

    Returns ``(boxes, keep)``: the sorted, clipped boxes and a bool ``[...]`` mask of
    those with positive height and width (NaN boxes are not kept).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    y0, x0, y1, x1 = tf.unstack(boxes, 4, axis=-1)
    ymin = tf.clip_by_value(tf.minimum(y0, y1), 0.0, height)
    ymax = tf.clip_by_value(tf.maximum(y0, y1), 0.0, height)
    xmin = tf.clip_by_value(tf.minimum(x0, x1), 0.0, width)
    xmax = tf.clip_by_value(tf.maximum(x0, x1), 0.0, width)
    keep = (ymax - ymin > 0.0) & (xmax - xmin > 0.0)
    return tf.stack([ymin, xmin, ymax, xmax], axis=-1), keep


def to_rgb(image):
    """``[H, W]`` or ``[H, W, C]`` with C in 1..4 → ``[H, W, 3]``: gray repeated, alpha dropped."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape.rank != 3:
        raise ValueError(f"an image must be [H, W] or [H, W, C], got shape {image.shape}")
    if image.shape[-1] == 3:
        return image
    channels = tf.shape(image)[-1]
    tf.debugging.assert_less_equal(channels, 4, message="an image must have 1 to 4 channels")
    index = tf.where(channels < 3, tf.constant([0, 0, 0]), tf.constant([0, 1, 2]))
    return tf.ensure_shape(tf.gather(image, index, axis=-1), [None, None, 3])


def _dropped_table():
    if not _dropped:
        with tf.init_scope():
            _dropped.append(tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0))
    return _dropped[0]


def record_drops(key, count):
    """Graph-safe: store ``count`` (int64 scalar) under ``key`` (string scalar) if positive."""
    positive = tf.reshape(count > 0, [1])
    return _dropped_table().insert(tf.boolean_mask([key], positive), tf.boolean_mask([count], positive))


def dropped_boxes():
    """``{image_id: boxes dropped}`` for every example :func:`validate_examples` cleaned."""
    if not _dropped:
        return {}
    keys, values = _dropped_table().export()
    return {k.decode(): int(v) for k, v in zip(keys.numpy(), values.numpy())}


def log_dropped_boxes(max_names=10):
    """Log (warning) how many boxes were dropped and in which examples; return the total."""
    counts = dropped_boxes()
    total = sum(counts.values())
    if total:
        names = ", ".join(sorted(counts)[:max_names]) + (", …" if len(counts) > max_names else "")
        logger.warning(
            "%d boxes dropped (empty after sorting and clipping, or objects with missing "
            "features) in %d examples: %s",
            total,
            len(counts),
            names,
        )
    return total


REQUIRED_KEYS = ("image", "boxes", "labels", "difficult")


def check_example_spec(examples):
    """Raise a ValueError unless ``examples`` yields the common example dict."""
    spec = examples.element_spec
    missing = [k for k in REQUIRED_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise ValueError(
            f"examples must be dicts with keys {REQUIRED_KEYS} (image uint8 [H, W, 3], boxes "
            f"float32 [N, 4] yxyx pixels, labels int32 [N], difficult bool [N]); missing {missing} "
            f"in element_spec {spec}"
        )


def validate_examples(examples, num_classes):
    """Common examples → the same, cleaned and checked (see the module doc).

    examples: ``tf.data.Dataset`` of ``{"image" [H, W, C], "boxes" [N, 4] yxyx pixels,
    "labels" [N], "difficult" [N]}`` and optionally ``"image_id"`` (string; the element
    index is used when absent). Output: image uint8 [H, W, 3], boxes float32, labels
    int32, difficult bool, image_id string. A label outside ``0..num_classes-1`` raises
    ``InvalidArgumentError`` naming the example when the element is read.
    """
    check_example_spec(examples)
    if "image_id" not in examples.element_spec:
        examples = examples.enumerate().map(
            lambda i, ex: {**ex, "image_id": tf.strings.format("example {}", i)}
        )

    def validate(ex):
        image = to_rgb(ex["image"])
        if image.dtype != tf.uint8:
            image = tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0.0, 255.0), tf.uint8)
        shape = tf.shape(image)
        boxes, keep = clean_boxes(tf.reshape(ex["boxes"], [-1, 4]), shape[0], shape[1])
        labels = tf.cast(tf.reshape(ex["labels"], [-1]), tf.int32)
        difficult = tf.cast(tf.reshape(ex["difficult"], [-1]), tf.bool)
        counts = tf.stack([tf.shape(boxes)[0], tf.size(labels), tf.size(difficult)])
        same_counts = tf.debugging.Assert(
            tf.reduce_all(counts == counts[0]),
            [
                "example",
                ex["image_id"],
                "has [boxes, labels, difficult] counts",
                counts,
                "; they must be equal",
            ],
        )
        in_range = tf.debugging.Assert(
            tf.reduce_all((labels >= 0) & (labels < num_classes)),
            ["labels must be in 0..", num_classes - 1, "; example", ex["image_id"], "has labels", labels],
            summarize=100,
        )
        with tf.control_dependencies([same_counts, in_range]):
            record = record_drops(ex["image_id"], tf.reduce_sum(tf.cast(~keep, tf.int64)))
        with tf.control_dependencies([record]):
            return {
                "image": image,
                "boxes": tf.boolean_mask(boxes, keep),
                "labels": tf.boolean_mask(labels, keep),
                "difficult": tf.boolean_mask(difficult, keep),
                "image_id": ex["image_id"],
            }

    return examples.map(validate, num_parallel_calls=tf.data.AUTOTUNE)
