"""Second-stage heads: R-FCN (the paper) and Faster R-CNN (for comparison).

Both own the backbone's conv5 and share one interface, so the model treats them alike:

- ``feature_maps(conv4)``: the per-image work, done once;
- ``classify(maps, rois)``: the per-RoI work → class logits ``[B, R, C+1]`` (index 0 is
  background, ``c + 1`` is user class ``c``) and class-agnostic box deltas ``[B, R, 4]``.

R-FCN's per-RoI work is a position-sensitive pooling and a mean; Faster R-CNN's is conv5
on a 14×14 crop of conv4 for every RoI, then average pooling and two dense layers.
"""

import keras
import tensorflow as tf

from rfcn_tf.layers.psroi_pool import PSRoIPool


def _serialize(model):
    return keras.saving.serialize_keras_object(model)


def _deserialize(config):
    return config if isinstance(config, keras.Model) else keras.saving.deserialize_keras_object(config)


@keras.saving.register_keras_serializable(package="rfcn_tf")
class RFCNHead(keras.layers.Layer):
    """Dilated conv5 → 1×1 conv to ``channels`` (ReLU) → sibling 1×1 convs to ``k²(C+1)``
    class score maps and ``4k²`` box maps (bin-major channel layout, see ``PSRoIPool``);
    PSRoIPool and a vote (mean over the k×k bins) per RoI.
    """

    def __init__(self, num_classes, conv5, k=7, channels=1024, psroi_mode="align",
                 samples_per_bin=2, spatial_scale=1.0 / 16, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.conv5 = _deserialize(conv5)
        self.k = int(k)
        self.channels = int(channels)
        self.psroi_mode = psroi_mode
        self.samples_per_bin = int(samples_per_bin)
        self.spatial_scale = float(spatial_scale)
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.reduce = keras.layers.Conv2D(self.channels, 1, activation="relu", name="reduce")
        self.class_maps = keras.layers.Conv2D(self.k * self.k * (self.num_classes + 1), 1,
                                              kernel_initializer=init, name="class_maps")
        self.box_maps = keras.layers.Conv2D(4 * self.k * self.k, 1, kernel_initializer=init,
                                            name="box_maps")
        self.pool = PSRoIPool(k=self.k, spatial_scale=self.spatial_scale,
                              samples_per_bin=self.samples_per_bin, mode=self.psroi_mode,
                              name="psroi_pool")

    def build(self, conv4_shape, rois_shape=None):
        self.conv5.build(conv4_shape)
        c5_shape = self.conv5.compute_output_shape(conv4_shape)
        self.reduce.build(c5_shape)
        reduced = (*c5_shape[:-1], self.channels)
        self.class_maps.build(reduced)
        self.box_maps.build(reduced)

    def feature_maps(self, conv4, training=False):
        """conv4 ``[B, h, w, C4]`` → ``{"class": [B, h, w, k²(C+1)], "box": [B, h, w, 4k²]}``."""
        x = self.reduce(self.conv5(conv4, training=training))
        return {"class": tf.cast(self.class_maps(x), tf.float32),
                "box": tf.cast(self.box_maps(x), tf.float32)}

    def bins(self, maps, rois):
        """Per-bin pooled values: ``[B, R, k, k, C+1]`` and ``[B, R, k, k, 4]``."""
        return self.pool(maps["class"], rois), self.pool(maps["box"], rois)

    def classify(self, maps, rois):
        class_bins, box_bins = self.bins(maps, rois)
        return tf.reduce_mean(class_bins, axis=[2, 3]), tf.reduce_mean(box_bins, axis=[2, 3])

    def call(self, conv4, rois, training=False):
        return self.classify(self.feature_maps(conv4, training=training), rois)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "conv5": _serialize(self.conv5), "k": self.k, "channels": self.channels,
                "psroi_mode": self.psroi_mode, "samples_per_bin": self.samples_per_bin,
                "spatial_scale": self.spatial_scale}


@keras.saving.register_keras_serializable(package="rfcn_tf")
class FasterRCNNHead(keras.layers.Layer):
    """RoIAlign crops (``crop_size``², via ``crop_and_resize``) of conv4 → conv5 per RoI →
    global average pooling → dense class logits and dense box deltas.
    """

    def __init__(self, num_classes, conv5, crop_size=14, spatial_scale=1.0 / 16, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.conv5 = _deserialize(conv5)
        self.crop_size = int(crop_size)
        self.spatial_scale = float(spatial_scale)
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        self.class_logits = keras.layers.Dense(
            self.num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="class_logits")
        self.box_deltas = keras.layers.Dense(
            4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="box_deltas")

    def build(self, conv4_shape, rois_shape=None):
        crop_shape = (None, self.crop_size, self.crop_size, conv4_shape[-1])
        self.conv5.build(crop_shape)
        channels = self.conv5.compute_output_shape(crop_shape)[-1]
        self.class_logits.build((None, channels))
        self.box_deltas.build((None, channels))

    def feature_maps(self, conv4, training=False):
        return {"conv4": conv4}

    def crops(self, conv4, rois):
        """RoIAlign: ``[B, R, 4]`` pixel rois → ``[B·R, crop, crop, C4]``, one bilinear
        sample at the centre of each of the crop×crop bins (``start = y·scale − 0.5``,
        coordinates clamped to the map within one cell of its border, 0 beyond)."""
        conv4 = tf.cast(conv4, tf.float32)
        # One replicated cell on every side turns crop_and_resize's "0 outside the map"
        # into "clamp within one cell, 0 beyond" (the rule PSRoIPool's align mode uses).
        padded = tf.pad(conv4, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        shape = tf.shape(padded)
        batch, rois_per_image = tf.shape(rois)[0], tf.shape(rois)[1]
        start = tf.stop_gradient(rois[..., :2]) * self.spatial_scale - 0.5
        size = (tf.stop_gradient(rois[..., 2:]) - tf.stop_gradient(rois[..., :2])) * self.spatial_scale
        step = size / self.crop_size
        first = start + 0.5 * step + 1.0  # +1: the padding
        last = first + (self.crop_size - 1) * step
        extent = tf.cast(tf.maximum(shape[1:3] - 1, 1), tf.float32)
        boxes = tf.concat([first / extent, last / extent], axis=-1)
        box_indices = tf.repeat(tf.range(batch), rois_per_image)
        return tf.image.crop_and_resize(padded, tf.reshape(boxes, [-1, 4]), box_indices,
                                        [self.crop_size, self.crop_size])

    def classify(self, maps, rois, training=False):
        batch, rois_per_image = tf.shape(rois)[0], tf.shape(rois)[1]
        crops = self.crops(maps["conv4"], rois)
        x = self.pool(self.conv5(crops, training=training))
        logits = tf.reshape(tf.cast(self.class_logits(x), tf.float32),
                            [batch, rois_per_image, self.num_classes + 1])
        deltas = tf.reshape(tf.cast(self.box_deltas(x), tf.float32), [batch, rois_per_image, 4])
        return logits, deltas

    def call(self, conv4, rois, training=False):
        return self.classify(self.feature_maps(conv4), rois, training=training)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "conv5": _serialize(self.conv5), "crop_size": self.crop_size,
                "spatial_scale": self.spatial_scale}
