"""Box utilities shared by the RPN, the targets and the decoder.

Every box here is absolute-pixel ``yxyx`` (``[ymin, xmin, ymax, xmax]``). Encoding and
IoU come from ``keras.utils.bounding_boxes`` (written in ``keras.ops``: every backend);
this module adds what R-FCN needs on top: a clamp on the log-size deltas before decoding
and clipping to each image's true size.
"""

import math

import numpy as np
from keras import backend, ops
from keras.utils import bounding_boxes

# exp() of a larger log-size delta would make a box > 1000/16 times its anchor.
MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def encode(anchors, boxes, std=None):
    """Boxes → deltas ``(dy, dx, dh, dw)`` relative to anchors, divided by ``std``.

    anchors, boxes: ``[..., 4]`` yxyx; broadcastable against each other.
    """
    return bounding_boxes.encode_box_to_deltas(
        anchors, boxes, anchor_format="yxyx", box_format="yxyx", variance=std
    )


def decode(anchors, deltas, std=None):
    """Deltas ``[..., 4]`` (scaled by ``std``) applied to anchors → yxyx boxes."""
    if std is not None:
        deltas = deltas * ops.convert_to_tensor(np.asarray(std), backend.standardize_dtype(deltas.dtype))
    deltas = ops.concatenate([deltas[..., :2], ops.minimum(deltas[..., 2:], MAX_LOG_SCALE)], axis=-1)
    return bounding_boxes.decode_deltas_to_boxes(anchors, deltas, anchor_format="yxyx", box_format="yxyx")


def iou(boxes1, boxes2):
    """Pairwise IoU: ``[B, N, 4]`` × ``[B, M, 4]`` → ``[B, N, M]`` (or unbatched)."""
    return bounding_boxes.compute_iou(boxes1, boxes2, bounding_box_format="yxyx")


def clip(boxes, image_sizes):
    """Clip ``[B, N, 4]`` boxes to each image's ``(height, width)`` in ``[B, 2]``."""
    sizes = ops.cast(image_sizes, backend.standardize_dtype(boxes.dtype))
    limits = ops.concatenate([sizes, sizes], axis=-1)[:, None, :]  # [B, 1, 4] = (h, w, h, w)
    return ops.clip(boxes, 0.0, limits)
