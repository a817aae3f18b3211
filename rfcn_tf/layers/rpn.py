"""The RPN on conv4: a 3×3 conv, sibling 1×1 convs for objectness and box deltas, and
the anchor grid they are read against."""

import keras
import tensorflow as tf

from rfcn_tf.anchors import anchor_grid


def rpn_head(features, num_anchors, channels=512):
    """conv4 ``[B, h, w, C]`` (a KerasTensor) → objectness logits ``[B, h, w, A]`` and
    deltas ``[B, h, w, 4A]`` (``dy, dx, dh, dw`` per anchor), as graph layers."""
    init = keras.initializers.RandomNormal(stddev=0.01)
    x = keras.layers.Conv2D(
        channels, 3, padding="same", activation="relu", kernel_initializer=init, name="rpn_conv"
    )(features)
    logits = keras.layers.Conv2D(
        num_anchors, 1, kernel_initializer=init, name="rpn_objectness", dtype="float32"
    )(x)
    deltas = keras.layers.Conv2D(
        4 * num_anchors, 1, kernel_initializer=init, name="rpn_deltas", dtype="float32"
    )(x)
    return logits, deltas


def flatten_rpn(logits, deltas):
    """``[B, h, w, A]``, ``[B, h, w, 4A]`` → ``[B, h·w·A]``, ``[B, h·w·A, 4]`` (the order of
    ``anchor_grid``)."""
    batch = keras.ops.shape(logits)[0]
    return (
        keras.ops.reshape(keras.ops.cast(logits, "float32"), (batch, -1)),
        keras.ops.reshape(keras.ops.cast(deltas, "float32"), (batch, -1, 4)),
    )


@keras.saving.register_keras_serializable(package="rfcn_tf")
class AnchorGrid(keras.layers.Layer):
    """RPN logits ``[B, h, w, A]`` → the ``[h·w·A, 4]`` yxyx pixel anchors they score
    (``anchors.anchor_grid``: cell centres at ``stride``, ``scales × ratios`` per cell)."""

    def __init__(self, stride, scales, ratios, **kwargs):
        kwargs.setdefault("dtype", "float32")  # pixel coordinates, whatever the policy
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.scales = tuple(float(s) for s in scales)
        self.ratios = tuple(float(r) for r in ratios)

    def call(self, logits):
        shape = tf.shape(logits)
        return anchor_grid(shape[1], shape[2], self.stride, self.scales, self.ratios)

    def compute_output_shape(self, logits_shape):
        return (None, 4)

    def get_config(self):
        return {
            **super().get_config(),
            "stride": self.stride,
            "scales": list(self.scales),
            "ratios": list(self.ratios),
        }
