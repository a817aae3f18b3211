"""Second-stage heads: R-FCN (the paper) and Faster R-CNN (for comparison).

A head is a builder, not a layer: it creates its layers once and applies them twice —
in the model's graph (on the proposals) and in the training step (on the proposals plus
the ground truth, see ``RFCN.compute_loss``). Both share one interface:

- ``score_maps(conv4)``: the per-image work, done once → a dict of graph tensors;
- ``per_roi(maps, rois)``: the per-RoI work → class logits ``[B, R, C+1]`` (index 0 is
  background, ``c + 1`` is user class ``c``) and class-agnostic box deltas ``[B, R, 4]``.

R-FCN's per-RoI work is a position-sensitive pooling and a mean (no weights); Faster
R-CNN's is conv5 on a 14×14 crop of conv4 for every RoI, average pooling and two dense
layers.
"""

import keras
from keras import ops

from rfcn_tf.layers.psroi_pool import PSRoIPool, align_positions, on_padded_map
from rfcn_tf.layers.sampling import check_implementation, crop_and_resize


@keras.saving.register_keras_serializable(package="rfcn_tf")
class Vote(keras.layers.Layer):
    """R-FCN's vote: per-bin values ``[B, R, k, k, D]`` → their mean ``[B, R, D]``."""

    def call(self, bins):
        return ops.mean(bins, axis=(2, 3))

    def compute_output_shape(self, bins_shape):
        return (bins_shape[0], bins_shape[1], bins_shape[4])


@keras.saving.register_keras_serializable(package="rfcn_tf")
class RoIAlign(keras.layers.Layer):
    """Features ``[B, H, W, C]`` + rois ``[B, R, 4]`` yxyx pixels → crops
    ``[B·R, crop_size, crop_size, C]``: one bilinear sample at the centre of each bin, by
    PSRoIPool's align rule (``psroi_pool.align_positions``; the edge value within one cell of
    the border, 0 beyond), via ``crop_and_resize`` (``implementation`` as PSRoIPool's)."""

    def __init__(self, crop_size=14, spatial_scale=1.0 / 16, implementation="crop_and_resize", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.crop_size = int(crop_size)
        self.spatial_scale = float(spatial_scale)
        check_implementation(implementation, "RoIAlign")
        self.implementation = implementation

    def call(self, features, rois):
        dtype = features.dtype
        features = ops.cast(features, "float32")
        _, height, width, _ = ops.shape(features)
        padded = ops.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")  # on_padded_map's
        batch, num_rois = ops.shape(rois)[:2]
        rois = ops.stop_gradient(ops.cast(rois, "float32"))
        # One sample per bin, at its centre: the first and last bins' are the crop's corners.
        sides = []
        for lo, hi, size in ((0, 2, height), (1, 3, width)):
            at = align_positions(rois[..., lo], rois[..., hi], self.spatial_scale, self.crop_size, 1)
            sides.append(on_padded_map(at[..., 0], ops.cast(size, "float32")))  # [B, R, crop]
        y, x = sides
        boxes = ops.stack([y[..., 0], x[..., 0], y[..., -1], x[..., -1]], axis=-1)
        box_indices = ops.broadcast_to(ops.arange(batch, dtype="int32")[:, None], (batch, num_rois))
        crops = crop_and_resize(
            padded,
            ops.reshape(boxes, (-1, 4)),
            ops.reshape(box_indices, (-1,)),
            [self.crop_size, self.crop_size],
            implementation=self.implementation,
        )
        return ops.cast(crops, dtype)

    def compute_output_shape(self, features_shape, rois_shape):
        return (None, self.crop_size, self.crop_size, features_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "crop_size": self.crop_size,
            "spatial_scale": self.spatial_scale,
            "implementation": self.implementation,
        }


@keras.saving.register_keras_serializable(package="rfcn_tf")
class UnflattenRoIs(keras.layers.Layer):
    """Per-RoI rows ``[B·R, D]`` → ``[B, R, D]`` float32, B and R read from ``rois [B, R, 4]``."""

    def call(self, values, rois):
        batch, num_rois = ops.shape(rois)[:2]
        return ops.reshape(ops.cast(values, "float32"), (batch, num_rois, -1))

    def compute_output_shape(self, values_shape, rois_shape):
        return (rois_shape[0], rois_shape[1], values_shape[-1])


class RFCNHead:
    """Dilated conv5 → 1×1 conv to ``channels`` (ReLU) → sibling 1×1 convs to ``k²(C+1)``
    class score maps and ``4k²`` box maps (bin-major channel layout, see ``PSRoIPool``);
    per RoI, PSRoIPool and a vote (the mean over the k×k bins)."""

    map_names = ("class_maps", "box_maps")

    def __init__(
        self,
        num_classes,
        conv5,
        k=7,
        channels=1024,
        psroi_mode="align",
        samples_per_bin=2,
        spatial_scale=1.0 / 16,
        implementation="crop_and_resize",
    ):
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.conv5 = conv5
        self.reduce = keras.layers.Conv2D(channels, 1, activation="relu", name="reduce")
        self.class_maps = keras.layers.Conv2D(
            k * k * (num_classes + 1), 1, kernel_initializer=init, name="class_maps"
        )
        self.box_maps = keras.layers.Conv2D(4 * k * k, 1, kernel_initializer=init, name="box_maps")
        pool = dict(
            k=k,
            spatial_scale=spatial_scale,
            samples_per_bin=samples_per_bin,
            mode=psroi_mode,
            implementation=implementation,
        )
        self.class_pool = PSRoIPool(**pool, name="class_pool")
        self.box_pool = PSRoIPool(**pool, name="box_pool")
        self.class_vote = Vote(name="class_vote")
        self.box_vote = Vote(name="box_vote")

    def score_maps(self, conv4):
        x = self.reduce(self.conv5(conv4))
        return {"class_maps": self.class_maps(x), "box_maps": self.box_maps(x)}

    def per_roi(self, maps, rois):
        return (
            self.class_vote(self.class_pool(maps["class_maps"], rois)),
            self.box_vote(self.box_pool(maps["box_maps"], rois)),
        )


class FasterRCNNHead:
    """RoIAlign crops (14², via ``crop_and_resize``) of conv4 → conv5 per RoI (its original
    stride 2) → global average pooling → dense class logits and dense box deltas."""

    map_names = ("conv4",)

    def __init__(
        self, num_classes, conv5, crop_size=14, spatial_scale=1.0 / 16, implementation="crop_and_resize"
    ):
        self.conv5 = conv5
        self.crops = RoIAlign(crop_size, spatial_scale, implementation, name="roi_align")
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        self.class_logits = keras.layers.Dense(
            num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="class_logits",
        )
        self.box_deltas = keras.layers.Dense(
            4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="box_deltas"
        )
        self.class_rows = UnflattenRoIs(name="class_per_roi")
        self.box_rows = UnflattenRoIs(name="box_per_roi")

    def score_maps(self, conv4):
        return {"conv4": conv4}

    def per_roi(self, maps, rois):
        x = self.pool(self.conv5(self.crops(maps["conv4"], rois)))
        return (self.class_rows(self.class_logits(x), rois), self.box_rows(self.box_deltas(x), rois))
