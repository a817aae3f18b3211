"""Bilinear crops: ``tf.image.crop_and_resize``, or the same arithmetic from gathers.

TFLite has no built-in ``CropAndResize`` (tensorflow/tensorflow#24407), so a detector
pooling with it cannot run in the plain LiteRT interpreter. ``gather_crop_and_resize``
computes what ``crop_and_resize`` computes (its kernel's formulas, in its order) from
GATHER, FLOOR and elementwise ops, which TFLite and ONNX have built in.
"""

import tensorflow as tf

IMPLEMENTATIONS = ("crop_and_resize", "gather")


def crop_and_resize(
    image, boxes, box_indices, crop_size, extrapolation_value=0.0, implementation="crop_and_resize"
):
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size, "bilinear",
    extrapolation_value)`` by ``implementation`` (one of ``IMPLEMENTATIONS``)."""
    if implementation == "gather":
        return gather_crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value)
    if implementation != "crop_and_resize":
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return tf.image.crop_and_resize(
        image, boxes, box_indices, crop_size, method="bilinear", extrapolation_value=extrapolation_value
    )


def gather_crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value=0.0):
    """``image [N, H, W, D]``, ``boxes [M, 4]`` normalised ``y1, x1, y2, x2`` (pixel =
    ``y·(H − 1)``), ``box_indices [M]`` → ``[M, ch, cw, D]`` float32, as
    ``crop_and_resize``: with ``ch > 1`` sample i sits at ``y1·(H−1) + i·(y2−y1)(H−1)/(ch−1)``
    (the box centre when ``ch = 1``); a sample outside ``[0, H−1]`` (or ``[0, W−1]``) is
    ``extrapolation_value``; otherwise bilinear between its four neighbours."""
    image = tf.cast(image, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    shape = tf.shape(image)
    height, width, depth = shape[1], shape[2], shape[3]
    y, y_inside = _sample_axis(boxes[:, 0], boxes[:, 2], height, crop_size[0])  # [M, ch]
    x, x_inside = _sample_axis(boxes[:, 1], boxes[:, 3], width, crop_size[1])  # [M, cw]

    top, left = tf.floor(y), tf.floor(x)
    y_lerp = (y - top)[:, :, None, None]
    x_lerp = (x - left)[:, None, :, None]
    last_row, last_col = height - 1, width - 1
    top_i = tf.clip_by_value(tf.cast(top, tf.int32), 0, last_row)
    bottom_i = tf.clip_by_value(tf.cast(tf.math.ceil(y), tf.int32), 0, last_row)
    left_i = tf.clip_by_value(tf.cast(left, tf.int32), 0, last_col)
    right_i = tf.clip_by_value(tf.cast(tf.math.ceil(x), tf.int32), 0, last_col)

    # Row-major pixel index into image reshaped to [N·H·W, D].
    base = (tf.cast(box_indices, tf.int32) * height)[:, None, None]
    pixels = tf.reshape(image, [-1, depth])

    def corner(rows, cols):
        index = ((base + rows[:, :, None]) * width) + cols[:, None, :]  # [M, ch, cw]
        return tf.gather(pixels, index)

    top_left, top_right = corner(top_i, left_i), corner(top_i, right_i)
    bottom_left, bottom_right = corner(bottom_i, left_i), corner(bottom_i, right_i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    values = upper + (lower - upper) * y_lerp
    inside = (y_inside[:, :, None] & x_inside[:, None, :])[..., None]
    return tf.where(inside, values, tf.cast(extrapolation_value, tf.float32))


def _sample_axis(lo, hi, size, count):
    """Sample coordinates ``[M, count]`` in pixels of one axis, and whether each lies in
    ``[0, size − 1]`` (crop_and_resize's rule)."""
    extent = tf.cast(size - 1, tf.float32)
    if count > 1:
        step = (hi - lo) * extent / (count - 1)
        at = lo[:, None] * extent + tf.range(count, dtype=tf.float32)[None, :] * step[:, None]
    else:
        at = (0.5 * (lo + hi) * extent)[:, None]
    return at, (at >= 0.0) & (at <= extent)
