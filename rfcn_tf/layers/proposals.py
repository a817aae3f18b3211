"""Proposals: decode the RPN's deltas, clip, drop tiny boxes, top-N, NMS, top-N."""

import keras
from keras import ops

from rfcn_tf import boxes as box_ops
from rfcn_tf.layers import nms
from rfcn_tf.layers.rpn import flatten_rpn
from rfcn_tf.ops import batched_gather

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
        # Nothing here is differentiated (the proposals are constants to the second stage);
        # stopping the gradient at the inputs also lets JAX run the NMS as a while loop.
        logits, deltas = flatten_rpn(ops.stop_gradient(logits), ops.stop_gradient(deltas))

        sizes = ops.cast(image_sizes, "float32")[:, None, :]  # [B, 1, 2]
        centres = (anchors[None, :, :2] + anchors[None, :, 2:]) / 2.0  # [1, N, 2]
        inside = ops.all(centres < sizes, axis=-1)
        logits = ops.where(inside, logits, _MASKED)

        n = ops.shape(logits)[1]  # an int; a tensor under TF's unknown shapes
        k = min(pre_nms, n) if isinstance(n, int) else ops.minimum(pre_nms, n)
        logits, index = ops.top_k(logits, k=k)
        proposals = box_ops.decode(ops.take(anchors, index, axis=0), batched_gather(deltas, index))
        proposals = box_ops.clip(proposals, image_sizes)
        heights = proposals[..., 2] - proposals[..., 0]
        widths = proposals[..., 3] - proposals[..., 1]
        big_enough = (heights > self.min_size) & (widths > self.min_size)
        logits = ops.where(big_enough, logits, _MASKED)

        keep, count = nms.select(proposals, logits, post_nms, self.nms_iou, _MASKED / 2)
        valid = ops.arange(post_nms)[None, :] < count[:, None]
        proposals = ops.where(valid[..., None], batched_gather(proposals, keep), 0.0)
        scores = ops.where(valid, batched_gather(logits, keep), _MASKED)
        return proposals, scores, valid

    def compute_output_spec(self, logits, deltas, anchors, image_sizes, training=False):
        # Spelled out: traced symbolically (JAX, PyTorch), the anchors' count and the
        # logits' h·w·A are unrelated unknowns.
        post_nms = self.post_nms_train if training else self.post_nms_test
        batch = logits.shape[0]
        return (
            keras.KerasTensor((batch, post_nms, 4), "float32"),
            keras.KerasTensor((batch, post_nms), "float32"),
            keras.KerasTensor((batch, post_nms), "bool"),
        )

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
