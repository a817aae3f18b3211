"""Proposals: decode the RPN's deltas, clip, drop tiny boxes, top-N, NMS, top-N."""

import keras
import tensorflow as tf

from rfcn_tf import boxes as box_ops
from rfcn_tf.layers import nms
from rfcn_tf.layers.rpn import flatten_rpn

_MASKED = -1e30  # the score of an anchor that may not become a proposal


@keras.saving.register_keras_serializable(package="rfcn_tf")
class ProposalLayer(keras.layers.Layer):
    """RPN outputs → ``proposals [B, P, 4]`` yxyx pixels, ``scores [B, P]`` (objectness
    logits), ``valid [B, P]`` bool; padded rows are zero boxes. P = post-NMS top-N.

    An anchor whose centre lies outside its image's true size (the padding of a batch of
    different-size images, or of the rounding up to the stride) never becomes a proposal, so an
    image gives the same proposals alone or in a padded batch.
    """

    def __init__(
        self,
        pre_nms_train=6000,
        post_nms_train=300,
        pre_nms_test=6000,
        post_nms_test=300,
        nms_iou=0.7,
        min_size=0.0,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # boxes stay float32 under mixed precision
        super().__init__(**kwargs)
        self.pre_nms_train = int(pre_nms_train)
        self.post_nms_train = int(post_nms_train)
        self.pre_nms_test = int(pre_nms_test)
        self.post_nms_test = int(post_nms_test)
        self.nms_iou = float(nms_iou)
        self.min_size = float(min_size)

    def call(self, logits, deltas, anchors, image_sizes, training=False):
        """logits ``[B, h, w, A]``, deltas ``[B, h, w, 4A]``, anchors ``[h·w·A, 4]``,
        image_sizes ``[B, 2]``."""
        pre_nms = self.pre_nms_train if training else self.pre_nms_test
        post_nms = self.post_nms_train if training else self.post_nms_test
        logits, deltas = flatten_rpn(logits, deltas)

        sizes = tf.cast(image_sizes, tf.float32)[:, None, :]  # [B, 1, 2]
        centres = (anchors[None, :, :2] + anchors[None, :, 2:]) / 2.0  # [1, N, 2]
        inside = tf.reduce_all(centres < sizes, axis=-1)
        logits = tf.where(inside, logits, _MASKED)

        k = tf.minimum(pre_nms, tf.shape(logits)[1])
        logits, index = tf.math.top_k(logits, k=k)
        proposals = box_ops.decode(tf.gather(anchors, index), tf.gather(deltas, index, batch_dims=1))
        proposals = box_ops.clip(proposals, image_sizes)
        heights = proposals[..., 2] - proposals[..., 0]
        widths = proposals[..., 3] - proposals[..., 1]
        big_enough = (heights > self.min_size) & (widths > self.min_size)
        logits = tf.where(big_enough, logits, _MASKED)

        keep, count = nms.nms_per_image(proposals, logits, post_nms, self.nms_iou, _MASKED / 2)
        valid = tf.range(post_nms)[None, :] < count[:, None]
        proposals = tf.where(valid[..., None], tf.gather(proposals, keep, batch_dims=1), 0.0)
        scores = tf.where(valid, tf.gather(logits, keep, batch_dims=1), _MASKED)
        return tf.stop_gradient(proposals), tf.stop_gradient(scores), valid

    def get_config(self):
        return {
            **super().get_config(),
            "pre_nms_train": self.pre_nms_train,
            "post_nms_train": self.post_nms_train,
            "pre_nms_test": self.pre_nms_test,
            "post_nms_test": self.post_nms_test,
            "nms_iou": self.nms_iou,
            "min_size": self.min_size,
        }
