"""The RPN head: a 3×3 conv, then sibling 1×1 convs for objectness and box deltas."""

import keras


@keras.saving.register_keras_serializable(package="rfcn_tf")
class RPNHead(keras.layers.Layer):
    """conv4 features ``[B, H, W, C]`` → objectness logits ``[B, H, W, A]`` and deltas
    ``[B, H, W, 4A]`` (``dy, dx, dh, dw`` per anchor); reshaped to ``[B, H·W·A]`` and
    ``[B, H·W·A, 4]`` they line up with ``anchors.anchor_grid``.
    """

    def __init__(self, num_anchors, channels=512, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = int(num_anchors)
        self.channels = int(channels)
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.conv = keras.layers.Conv2D(self.channels, 3, padding="same", activation="relu",
                                        kernel_initializer=init, name="conv")
        self.objectness = keras.layers.Conv2D(self.num_anchors, 1, kernel_initializer=init,
                                              name="objectness", dtype="float32")
        self.deltas = keras.layers.Conv2D(4 * self.num_anchors, 1, kernel_initializer=init,
                                          name="deltas", dtype="float32")

    def build(self, features_shape):
        self.conv.build(features_shape)
        hidden = (*features_shape[:-1], self.channels)
        self.objectness.build(hidden)
        self.deltas.build(hidden)

    def call(self, features):
        x = self.conv(features)
        return self.objectness(x), self.deltas(x)

    def compute_output_shape(self, features_shape):
        spatial = tuple(features_shape[:-1])
        return (*spatial, self.num_anchors), (*spatial, 4 * self.num_anchors)

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors, "channels": self.channels}
