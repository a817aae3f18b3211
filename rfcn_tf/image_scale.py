"""The one rule for the scale a detector sees its images at (torchvision's transform rule).

An image of ``(height, width)`` is resized, keeping its aspect ratio, so that its shorter
side becomes ``min_side`` unless its longer side would then exceed ``max_side``, in which
case the longer side becomes ``max_side``. The model applies it to every image it gets
(``layers.transform.ImageResizer``); ``make_pipeline`` applies it ahead of batching so
training batches arrive at that size already (the model's resize is then the identity);
``serving_bytes`` and ``rfcn-tf predict`` use it to decode JPEGs at a reduced size.

``resized_size``, ``target_size`` and ``resize_image`` are TensorFlow ops (for tf.data, the
serving signatures and the TensorFlow model; TensorFlow is imported when they run);
``static_resized_size`` is the same rule in numpy for sizes known in Python (the model's
input shape under JAX and PyTorch).
"""

import numpy as np


def resized_size(sizes, min_side, max_side):
    """``[..., 2]`` (height, width) → ``[..., 2]`` int32 sizes after the rule (each ≥ 1).

    min_side / max_side: numbers or tensors broadcastable against ``sizes[..., 0]``.
    """
    import tensorflow as tf

    hw = tf.cast(sizes, tf.float32)
    shorter = tf.reduce_min(hw, axis=-1)
    longer = tf.reduce_max(hw, axis=-1)
    scale = tf.minimum(tf.cast(min_side, tf.float32) / shorter, tf.cast(max_side, tf.float32) / longer)
    return tf.maximum(tf.cast(tf.round(hw * scale[..., None]), tf.int32), 1)


def static_resized_size(sizes, min_side, max_side):
    """``resized_size`` in numpy, with its float32 arithmetic and round-half-to-even, so the
    two agree to the pixel: ``[..., 2]`` → int32 numpy array ``[..., 2]``."""
    hw = np.asarray(sizes, np.float32)
    scale = np.minimum(np.float32(min_side) / hw.min(axis=-1), np.float32(max_side) / hw.max(axis=-1)).astype(
        np.float32
    )
    return np.maximum(np.round(hw * scale[..., None]).astype(np.int32), 1)


def inference_side(min_side):
    """The shorter side images are resized to at inference: ``min_side``, or the largest of
    several (multi-scale training)."""
    return max(min_side) if isinstance(min_side, (tuple, list)) else min_side


def target_size(min_side, max_side):
    """The rule at inference as ``(height, width) → (h, w)`` (int32 scalars; for
    ``image_io.decode_image``): several ``min_side`` values (multi-scale training) → the largest."""
    import tensorflow as tf

    side = inference_side(min_side)

    def size(height, width):
        new = resized_size(tf.stack([height, width]), side, max_side)
        return new[0], new[1]

    return size


def resize_image(image, size):
    """``[H, W, 3]`` → float32 ``[size[0], size[1], 3]``; bilinear, antialiased when
    shrinking (a 6000×4000 photo keeps its detail at 600×900), unchanged at its own size."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    return tf.cond(
        tf.reduce_all(tf.shape(image)[:2] == size),
        lambda: image,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
    )
