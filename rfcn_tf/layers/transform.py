"""The model's own input transform: resize to its scale, then the backbone's convention.

``ImageResizer`` applies the scale rule of ``rfcn_tf.image_scale`` to every image and
reports the per-axis scale, so the decoder can map boxes back to the original pixels;
``Preprocess`` turns 0..255 RGB into what the backbone expects.
"""

import keras
import tensorflow as tf

from rfcn_tf.backbones import preprocess
from rfcn_tf.image_scale import resize_image, resized_size
from rfcn_tf.inputs import check_images


@keras.saving.register_keras_serializable(package="rfcn_tf")
class ImageResizer(keras.layers.Layer):
    """``images [B, H, W, 3]`` 0..255 (zero padded beyond ``image_sizes [B, 2]``, which
    default to the full size) → ``(images float32 [B, H', W', 3], sizes [B, 2] int32,
    scales [B, 2] float32)``: each image resized (aspect kept) so that its shorter side is
    ``max(min_side)`` unless its longer side would exceed ``max_side``; resized = original
    × scale per axis. A batch already at that size passes through untouched.

    ``min_side`` may list several sides (multi-scale training): in training an image that
    already has the size of any of them (``make_pipeline`` picks one per image) is kept.

    ``portable``: images of a size known when the graph is built (an export's fixed input)
    are resized by two constant matrix products, which TFLite and ONNX have built in, instead
    of ``tf.image.resize``'s antialiased kernel; the matrices are that kernel's own weights.
    """

    def __init__(self, min_side=600, max_side=1000, portable=False, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        sides = (min_side,) if isinstance(min_side, int) else tuple(min_side)
        self.min_side = tuple(sorted(int(s) for s in sides))
        self.max_side = int(max_side)
        self.portable = bool(portable)

    def call(self, images, image_sizes=None, training=False):
        static = image_sizes is None and tf.TensorShape(images.shape)[1:3].is_fully_defined()
        images, image_sizes = check_images(images, image_sizes)
        images = tf.cast(images, tf.float32)
        if self.portable and static:
            return self._resize_known_size(images)
        sides = tf.constant(self.min_side, tf.float32)
        candidates = resized_size(image_sizes[None], sides[:, None], self.max_side)  # [S, B, 2]
        target = candidates[-1]
        if training and len(self.min_side) > 1:
            matched = tf.reduce_any(tf.reduce_all(candidates == image_sizes[None], -1), 0)
            target = tf.where(matched[:, None], image_sizes, target)
        scales = tf.cast(target, tf.float32) / tf.cast(image_sizes, tf.float32)
        canvas = tf.reduce_max(target, axis=0)

        def one(args):
            image, size, new = args
            out = resize_image(image[: size[0], : size[1]], new)
            return tf.pad(out, [[0, canvas[0] - new[0]], [0, canvas[1] - new[1]], [0, 0]])

        def resize_each():
            return tf.map_fn(
                one,
                (images, image_sizes, target),
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32),
            )

        resized = tf.cond(tf.reduce_all(target == image_sizes), lambda: images, resize_each)
        return resized, target, scales

    def _resize_known_size(self, images):
        """Every image ``[H, W]`` (known now) → its target size by ``rows @ image @ colsᵀ``."""
        height, width = images.shape[1:3]
        with tf.init_scope():  # computed once, eagerly: constants of the graph
            size = resized_size(tf.constant([height, width]), max(self.min_side), self.max_side)
            new_height, new_width = (int(v) for v in size.numpy())
            scale = (tf.cast(size, tf.float32) / tf.constant([height, width], tf.float32)).numpy()
            rows = _resize_matrix(height, new_height)
            cols = _resize_matrix(width, new_width)
        batch = tf.shape(images)[0]
        sizes = tf.tile(tf.constant([[new_height, new_width]], tf.int32), [batch, 1])
        scales = tf.tile(tf.constant(scale[None]), [batch, 1])
        if (new_height, new_width) == (height, width):
            return images, sizes, scales
        planes = tf.transpose(images, [0, 3, 1, 2])  # [B, 3, H, W]
        planes = tf.matmul(tf.matmul(rows, planes), cols, transpose_b=True)
        return tf.transpose(planes, [0, 2, 3, 1]), sizes, scales

    def get_config(self):
        return {
            **super().get_config(),
            "min_side": list(self.min_side),
            "max_side": self.max_side,
            "portable": self.portable,
        }


def _resize_matrix(size, new_size):
    """``[new_size, size]`` float32: ``resize_image``'s weights along one axis (it is
    separable), read off by resizing the identity."""
    if new_size == size:
        return tf.eye(size)
    columns = resize_image(tf.eye(size)[:, None, :], tf.constant([new_size, 1]))
    return columns[:, 0, :]


@keras.saving.register_keras_serializable(package="rfcn_tf")
class Preprocess(keras.layers.Layer):
    """0..255 RGB ``[B, H, W, 3]`` + true ``sizes [B, 2]`` → the backbone's convention
    (``backbones.preprocess``), pixels beyond each true size set to 0, height and width
    padded up to a multiple of ``stride``."""

    def __init__(self, stride=16, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, images, sizes):
        x = preprocess(tf.cast(images, tf.float32))
        shape = tf.shape(x)
        rows = tf.range(shape[1])[None, :, None] < sizes[:, 0:1, None]
        cols = tf.range(shape[2])[None, None, :] < sizes[:, 1:2, None]
        x = tf.where((rows & cols)[..., None], x, 0.0)
        pad_h = (-shape[1]) % self.stride
        pad_w = (-shape[2]) % self.stride
        return tf.cast(tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]), self.compute_dtype)

    def compute_output_shape(self, images_shape, sizes_shape):
        return (images_shape[0], None, None, 3)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}
