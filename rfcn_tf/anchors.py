"""The anchor grid: every feature-map cell carries ``len(scales) × len(ratios)`` anchors."""

import numpy as np
from keras import ops


def base_anchors(scales, ratios):
    """``[A, 4]`` yxyx anchors centred on 0; area ``scale²``, height/width = ``ratio``.

    Order: ratio-major (all scales of the first ratio, then the next ratio).
    """
    shapes = []
    for ratio in ratios:
        for scale in scales:
            h = scale * np.sqrt(ratio)
            w = scale / np.sqrt(ratio)
            shapes.append([-h / 2, -w / 2, h / 2, w / 2])
    return np.asarray(shapes, np.float32)


def anchor_grid(feature_height, feature_width, stride, scales, ratios):
    """``[H·W·A, 4]`` yxyx anchors in image pixels, ordered (y, x, anchor).

    Cell (y, x) covers pixels ``[stride·y, stride·(y+1))``; its anchors are centred on the
    cell's centre. The order matches an RPN output of shape ``[B, H, W, A]`` reshaped to
    ``[B, H·W·A]``. The sizes are Python ints (static shapes) or scalar tensors.
    """
    stride = np.float32(stride)
    ys = (ops.arange(feature_height, dtype="float32") + 0.5) * stride
    xs = (ops.arange(feature_width, dtype="float32") + 0.5) * stride
    cy, cx = ops.meshgrid(ys, xs, indexing="ij")
    centres = ops.stack([cy, cx, cy, cx], axis=-1)[:, :, None, :]  # [H, W, 1, 4]
    anchors = centres + ops.convert_to_tensor(base_anchors(scales, ratios))[None, None]  # [H, W, A, 4]
    return ops.reshape(anchors, (-1, 4))
