"""The one rule for the scale a detector sees its images at (torchvision's transform rule).

An image of ``(height, width)`` is resized, keeping its aspect ratio, so that its shorter
side becomes ``min_side`` unless its longer side would then exceed ``max_side``, in which
case the longer side becomes ``max_side``. The model applies it to every image it gets
(``layers.transform.ImageResizer``); ``make_pipeline`` applies it ahead of batching so
training batches arrive at that size already (the model's resize is then the identity);
``serving_bytes`` and ``rfcn-tf predict`` use it to decode JPEGs at a reduced size.
"""

import tensorflow as tf


def resized_size(sizes, min_side, max_side):
    """``[..., 2]`` (height, width) → ``[..., 2]`` int32 sizes after the rule (each ≥ 1).

    min_side / max_side: numbers or tensors broadcastable against ``sizes[..., 0]``.
    """
    hw = tf.cast(sizes, tf.float32)
    shorter = tf.reduce_min(hw, axis=-1)
    longer = tf.reduce_max(hw, axis=-1)
    scale = tf.minimum(tf.cast(min_side, tf.float32) / shorter, tf.cast(max_side, tf.float32) / longer)
    return tf.maximum(tf.cast(tf.round(hw * scale[..., None]), tf.int32), 1)


def target_size(min_side, max_side):
    """The rule at inference as ``(height, width) → (h, w)`` (int32 scalars; for
    ``image_io.decode_image``): several ``min_side`` values (multi-scale training) → the largest."""
    side = max(min_side) if isinstance(min_side, (tuple, list)) else min_side

    def size(height, width):
        new = resized_size(tf.stack([height, width]), side, max_side)
        return new[0], new[1]

    return size


def resize_image(image, size):
    """``[H, W, 3]`` → float32 ``[size[0], size[1], 3]``; bilinear, antialiased when
    shrinking (a 6000×4000 photo keeps its detail at 600×900), unchanged at its own size."""
    image = tf.cast(image, tf.float32)
    return tf.cond(
        tf.reduce_all(tf.shape(image)[:2] == size),
        lambda: image,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
    )
