"""The model's own input transform: resize to its scale, then the backbone's convention.

``ImageResizer`` applies the scale rule of ``rfcn_tf.image_scale`` to every image and
reports the per-axis scale, so the decoder can map boxes back to the original pixels;
``Preprocess`` turns 0..255 RGB into what the backbone expects, or standardises each image
by its own statistics.
"""

import keras
import numpy as np
from keras import ops

from rfcn_tf.backbones import preprocess
from rfcn_tf.config import INPUT_NORMALIZATIONS
from rfcn_tf.image_scale import inference_side, static_resized_size
from rfcn_tf.inputs import check_images
from rfcn_tf.ops import on_tensorflow


@keras.saving.register_keras_serializable(package="rfcn_tf")
class ImageResizer(keras.layers.Layer):
    """``images [B, H, W, 3]`` 0..255 (zero padded beyond ``image_sizes [B, 2]``, which
    default to the full size) → ``(images float32 [B, H', W', 3], sizes [B, 2] int32,
    scales [B, 2] float32)``: each image resized (aspect kept) so that its shorter side is
    ``max(min_side)`` unless its longer side would exceed ``max_side``; resized = original
    × scale per axis. A batch already at that size passes through untouched.

    ``min_side`` may list several sides (multi-scale training): in training an image that
    already has the size of any of them (``make_pipeline`` picks one per image) is kept.

    Resizing is bilinear and antialiased (``tf.image.resize``'s kernel; under JAX and PyTorch
    ``keras.ops.image.resize``, the same kernel: within 0.01 of TensorFlow's in 0..255 units).

    **Padded batches under JAX and PyTorch.** Shapes are fixed when JAX traces, so a batch
    with ``image_sizes`` (zero padded) cannot be resized to a canvas that depends on those
    sizes: it must already be at the model's scale — every image of the size the rule gives
    it (in training, or of any ``min_side``'s size), as the data pipelines deliver — and
    passes through. Where the sizes are concrete (PyTorch; JAX outside ``jit``) a batch not
    at scale raises ValueError; inside a jitted step that check cannot run. ``RFCN.predict``
    splits a padded batch into images before calling the model. Under TensorFlow each image
    is resized into a common canvas (``tf.map_fn``).

    ``portable`` (TensorFlow): images of a size known when the graph is built (an export's
    fixed input) are resized by two constant matrix products, which TFLite and ONNX have
    built in, instead of ``tf.image.resize``'s antialiased kernel; the matrices are that
    kernel's own weights. Other backends ignore it (they have no such exports).
    """

    def __init__(self, min_side=600, max_side=1000, portable=False, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        sides = (min_side,) if isinstance(min_side, int) else tuple(min_side)
        self.min_side = tuple(sorted(int(s) for s in sides))
        self.max_side = int(max_side)
        self.portable = bool(portable)

    def call(self, images, image_sizes=None, training=False):
        if on_tensorflow():
            return _resize_tensorflow(self, images, image_sizes, training)
        images, sizes = check_images(images, image_sizes)
        images = ops.cast(images, "float32")
        if image_sizes is not None:
            self._check_at_scale(sizes, training)
            return images, sizes, ops.ones(ops.shape(sizes), "float32")
        batch, height, width, _ = ops.shape(images)
        target = self._targets(np.array([[height, width]]), training)[0]
        scale = target.astype(np.float32) / np.array([height, width], np.float32)
        sizes = ops.broadcast_to(ops.convert_to_tensor(target[None], "int32"), (batch, 2))
        scales = ops.broadcast_to(ops.convert_to_tensor(scale[None], "float32"), (batch, 2))
        if tuple(target) != (height, width):
            size = tuple(int(v) for v in target)
            images = ops.image.resize(images, size, interpolation="bilinear", antialias=True)
        return images, sizes, scales

    def compute_output_spec(self, images, image_sizes=None, training=False):
        # Spelled out: JAX infers shapes with symbolic dimensions, which the rule cannot take.
        batch, height, width = images.shape[:3]
        new_height = new_width = None
        if image_sizes is None and height is not None and width is not None:
            new_height, new_width = (int(v) for v in self._targets(np.array([[height, width]]), training)[0])
        return (
            keras.KerasTensor((batch, new_height, new_width, 3), "float32"),
            keras.KerasTensor((batch, 2), "int32"),
            keras.KerasTensor((batch, 2), "float32"),
        )

    def _targets(self, sizes, training):
        """The rule on numpy ``sizes [B, 2]`` → ``[B, 2]``; in multi-scale training a
        size that is already one of the ``min_side`` sizes is kept."""
        candidates = static_resized_size(sizes[None], np.array(self.min_side)[:, None], self.max_side)
        target = candidates[-1]
        if training and len(self.min_side) > 1:
            matched = np.any(np.all(candidates == sizes[None], -1), 0)
            target = np.where(matched[..., None], sizes, target)
        return target

    def _check_at_scale(self, sizes, training):
        """A padded batch must be at the model's scale already (see the class docstring):
        ValueError naming the first image that is not, when ``sizes`` are concrete."""
        try:
            sizes = np.asarray(ops.convert_to_numpy(sizes))
        except Exception:  # a tracer inside jax.jit: no values to check
            return
        wrong = np.flatnonzero(np.any(self._targets(sizes, training) != sizes, -1))
        if wrong.size:
            i = int(wrong[0])
            expected = self._targets(sizes[i : i + 1], False)[0].tolist()
            raise ValueError(
                f"ImageResizer: under the {keras.backend.backend()} backend a zero-padded batch "
                f"(image_sizes given) must already be at the model's scale; image {i} is "
                f"{sizes[i].tolist()}, the scale rule makes it {expected}. "
                "Pass images one by one (RFCN.predict does), or resize them first (rfcn_tf.image_scale)"
            )

    def get_config(self):
        return {
            **super().get_config(),
            "min_side": list(self.min_side),
            "max_side": self.max_side,
            "portable": self.portable,
        }


def _resize_tensorflow(layer, images, image_sizes, training):
    """``ImageResizer.call`` under TensorFlow: each image resized within a padded batch
    (``tf.map_fn``), or by constant matrices when ``portable`` and the size is static."""
    import tensorflow as tf

    from rfcn_tf.image_scale import resize_image, resized_size

    static = image_sizes is None and tf.TensorShape(images.shape)[1:3].is_fully_defined()
    images, image_sizes = check_images(images, image_sizes)
    images = tf.cast(images, tf.float32)
    if layer.portable and static:
        return _resize_known_size(layer, images)
    sides = tf.constant(layer.min_side, tf.float32)
    candidates = resized_size(image_sizes[None], sides[:, None], layer.max_side)  # [S, B, 2]
    target = candidates[-1]
    if training and len(layer.min_side) > 1:
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


def _resize_known_size(layer, images):
    """Every image ``[H, W]`` (known now) → its target size by ``rows @ image @ colsᵀ``."""
    import tensorflow as tf

    height, width = images.shape[1:3]
    new_height, new_width = (
        int(v) for v in static_resized_size([height, width], inference_side(layer.min_side), layer.max_side)
    )
    with tf.init_scope():  # computed once, eagerly
        rows = _resize_matrix(height, new_height).numpy()
        cols = _resize_matrix(width, new_width).numpy()
    # Const nodes of the graph, not captured eager tensors (inputs of a traced function).
    rows, cols = tf.constant(rows), tf.constant(cols)
    scale = np.array([new_height, new_width], np.float32) / np.array([height, width], np.float32)
    batch = tf.shape(images)[0]
    sizes = tf.tile(tf.constant([[new_height, new_width]], tf.int32), [batch, 1])
    scales = tf.tile(tf.constant(scale[None]), [batch, 1])
    if (new_height, new_width) == (height, width):
        return images, sizes, scales
    planes = tf.transpose(images, [0, 3, 1, 2])  # [B, 3, H, W]
    planes = tf.matmul(tf.matmul(rows, planes), cols, transpose_b=True)
    return tf.transpose(planes, [0, 2, 3, 1]), sizes, scales


def _resize_matrix(size, new_size):
    """``[new_size, size]`` float32: ``resize_image``'s weights along one axis (it is
    separable), read off by resizing the identity (TensorFlow: the kernel computes its
    weights in float32; a numpy formula of the same kernel differs from them by ~1e-5)."""
    import tensorflow as tf

    from rfcn_tf.image_scale import resize_image

    if new_size == size:
        return tf.eye(size)
    columns = resize_image(tf.eye(size)[:, None, :], tf.constant([new_size, 1]))
    return columns[:, 0, :]


@keras.saving.register_keras_serializable(package="rfcn_tf")
class Preprocess(keras.layers.Layer):
    """0..255 RGB ``[B, H, W, 3]`` + true ``sizes [B, 2]`` → the network's input: pixels
    beyond each true size set to 0, height and width padded up to a multiple of ``stride``.

    normalization: ``"backbone"``: the backbone's convention (``backbones.preprocess``: BGR,
    the ImageNet mean removed). ``"per_image"``: BGR, each channel of each image minus its
    mean over the image's true pixels, divided by (its standard deviation + 1) and scaled by
    ``PER_IMAGE_SCALE``; a padded image gives what it gives unpadded.
    """

    # About the standard deviation of a photo's pixels in 0..255: standardised images span
    # the range the backbone convention gives the first convolution.
    PER_IMAGE_SCALE = 50.0

    def __init__(self, stride=16, normalization="backbone", **kwargs):
        super().__init__(**kwargs)
        if normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {INPUT_NORMALIZATIONS}; got {normalization!r}")
        self.stride = int(stride)
        self.normalization = normalization

    def call(self, images, sizes):
        x = ops.cast(images, "float32")
        _, height, width, _ = ops.shape(x)
        sizes = ops.cast(sizes, "int32")
        rows = ops.arange(height, dtype="int32")[None, :, None] < sizes[:, 0:1, None]
        cols = ops.arange(width, dtype="int32")[None, None, :] < sizes[:, 1:2, None]
        valid = ops.logical_and(rows, cols)[..., None]
        if self.normalization == "per_image":
            x = _standardize(ops.flip(x, axis=-1), ops.cast(valid, "float32")) * self.PER_IMAGE_SCALE
        else:
            x = preprocess(x)
        x = ops.where(valid, x, 0.0)
        pad_h = (-height) % self.stride
        pad_w = (-width) % self.stride
        return ops.cast(ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]), self.compute_dtype)

    def compute_output_shape(self, images_shape, sizes_shape):
        return (images_shape[0], None, None, 3)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "normalization": self.normalization}


def _standardize(x, valid):
    """``x [B, H, W, C]`` → each image's channels minus their mean, over (standard deviation
    + 1), both over the pixels where ``valid [B, H, W, 1]`` is 1."""
    count = ops.maximum(ops.sum(valid, axis=(1, 2), keepdims=True), 1.0)
    mean = ops.sum(x * valid, axis=(1, 2), keepdims=True) / count
    centred = (x - mean) * valid
    std = ops.sqrt(ops.sum(ops.square(centred), axis=(1, 2), keepdims=True) / count)
    return centred / (std + 1.0)
