"""Bilinear crops: ``tf.image.crop_and_resize``, or the same arithmetic from gathers.

``gather_crop_and_resize`` computes what ``crop_and_resize`` computes (its kernel's
formulas, in its order) from gathers, floors and elementwise ``keras.ops``: it is the
backend-neutral path (JAX and PyTorch always), and TensorFlow's for TFLite and ONNX
exports — TFLite has no built-in ``CropAndResize`` (tensorflow/tensorflow#24407), while
GATHER, FLOOR and elementwise ops are built into TFLite and ONNX.
"""

from keras import ops

from rfcn_tf.ops import on_tensorflow

IMPLEMENTATIONS = ("crop_and_resize", "gather")


def check_implementation(implementation, owner):
    """ValueError naming ``owner`` unless ``implementation`` is one of ``IMPLEMENTATIONS``."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{owner}: `implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        )


def uses_kernel(implementation):
    """Whether ``crop_and_resize(..., implementation)`` runs TensorFlow's kernel (the default
    on TensorFlow); everywhere else the gathers run."""
    return implementation == "crop_and_resize" and on_tensorflow()


def crop_and_resize(
    image, boxes, box_indices, crop_size, extrapolation_value=0.0, implementation="crop_and_resize"
):
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size, "bilinear",
    extrapolation_value)`` by ``implementation`` (one of ``IMPLEMENTATIONS``): the kernel on
    TensorFlow for ``"crop_and_resize"``, ``gather_crop_and_resize`` otherwise."""
    check_implementation(implementation, "crop_and_resize")
    if not uses_kernel(implementation):
        return gather_crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value)
    import tensorflow as tf

    return tf.image.crop_and_resize(
        image, boxes, box_indices, crop_size, method="bilinear", extrapolation_value=extrapolation_value
    )


def gather_crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value=0.0):
    """``image [N, H, W, D]``, ``boxes [M, 4]`` normalised ``y1, x1, y2, x2`` (pixel =
    ``y·(H − 1)``), ``box_indices [M]`` → ``[M, ch, cw, D]`` float32, as
    ``crop_and_resize``: with ``ch > 1`` sample i sits at ``y1·(H−1) + i·(y2−y1)(H−1)/(ch−1)``
    (the box centre when ``ch = 1``); a sample outside ``[0, H−1]`` (or ``[0, W−1]``) is
    ``extrapolation_value``; otherwise bilinear between its four neighbours. Gradients flow
    to ``image``."""
    image = ops.cast(image, "float32")
    boxes = ops.cast(boxes, "float32")
    _, height, width, depth = ops.shape(image)
    y, y_inside = _sample_axis(boxes[:, 0], boxes[:, 2], height, crop_size[0])  # [M, ch]
    x, x_inside = _sample_axis(boxes[:, 1], boxes[:, 3], width, crop_size[1])  # [M, cw]

    top, left = ops.floor(y), ops.floor(x)
    y_lerp = (y - top)[:, :, None, None]
    x_lerp = (x - left)[:, None, :, None]
    last_row, last_col = height - 1, width - 1
    top_i = ops.clip(ops.cast(top, "int32"), 0, last_row)
    bottom_i = ops.clip(ops.cast(ops.ceil(y), "int32"), 0, last_row)
    left_i = ops.clip(ops.cast(left, "int32"), 0, last_col)
    right_i = ops.clip(ops.cast(ops.ceil(x), "int32"), 0, last_col)

    # Row-major pixel index into image reshaped to [N·H·W, D].
    base = (ops.cast(box_indices, "int32") * height)[:, None, None]
    pixels = ops.reshape(image, (-1, depth))

    def corner(rows, cols):
        index = ((base + rows[:, :, None]) * width) + cols[:, None, :]  # [M, ch, cw]
        return _take_rows(pixels, index)

    top_left, top_right = corner(top_i, left_i), corner(top_i, right_i)
    bottom_left, bottom_right = corner(bottom_i, left_i), corner(bottom_i, right_i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    values = upper + (lower - upper) * y_lerp
    inside = ops.logical_and(y_inside[:, :, None], x_inside[:, None, :])[..., None]
    return ops.where(inside, values, ops.cast(extrapolation_value, "float32"))


def _take_rows(params, indices):
    """``params[indices]`` along axis 0 (indices in range). On TensorFlow a plain
    ``tf.gather``: ``keras.ops.take`` adds a negative-index select, two more ops (LESS,
    SELECT) in every TFLite and ONNX export."""
    if on_tensorflow():
        import tensorflow as tf

        return tf.gather(params, indices)
    return ops.take(params, indices, axis=0)


def _sample_axis(lo, hi, size, count):
    """Sample coordinates ``[M, count]`` in pixels of one axis, and whether each lies in
    ``[0, size − 1]`` (crop_and_resize's rule)."""
    extent = ops.cast(size - 1, "float32")
    if count > 1:
        step = (hi - lo) * extent / (count - 1)
        at = lo[:, None] * extent + ops.arange(count, dtype="float32")[None, :] * step[:, None]
    else:
        at = (0.5 * (lo + hi) * extent)[:, None]
    return at, ops.logical_and(at >= 0.0, at <= extent)
