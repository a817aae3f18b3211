"""ProposalLayer against a plain-numpy definition: clip, drop masked anchors, top-N, greedy NMS."""

import numpy as np
import pytest

from rfcn_tf.layers import ProposalLayer
from tests.reference_targets import iou


def reference_proposals(boxes, scores, image_size, pre_nms, post_nms, nms_iou):
    """One image, zero deltas (proposal = anchor): the boxes kept, best first. Anchors
    centred outside the image never compete; boxes clipped to zero size are dropped after
    the pre-NMS top-N."""
    height, width = image_size
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (centres[:, 0] < height) & (centres[:, 1] < width)
    clipped = np.clip(boxes, 0, [height, width, height, width])
    order = [i for i in np.argsort(-scores, kind="stable") if inside[i]][:pre_nms]
    kept = []
    for i in order:
        empty = clipped[i, 2] <= clipped[i, 0] or clipped[i, 3] <= clipped[i, 1]
        if not empty and all(iou(clipped[i], clipped[j]) <= nms_iou for j in kept):
            kept.append(i)
        if len(kept) == post_nms:
            break
    return clipped[kept]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposals_match_greedy_nms_per_image(seed):
    rng = np.random.default_rng(seed)
    num, pre_nms, post_nms = 400, 300, 50
    corner = rng.uniform(-20, 150, (num, 2))
    anchors = np.concatenate([corner, corner + rng.uniform(4, 60, (num, 2))], -1).astype(np.float32)
    scores = rng.normal(size=(2, num)).astype(np.float32)
    image_sizes = np.array([[128, 128], [96, 112]], np.int32)
    layer = ProposalLayer(pre_nms, post_nms, pre_nms, post_nms, nms_iou=0.7)
    proposals, _, valid = layer(scores, np.zeros((2, num, 4), np.float32), anchors, image_sizes)
    for b in range(2):
        expected = reference_proposals(anchors, scores[b], image_sizes[b], pre_nms, post_nms, 0.7)
        count = int(np.sum(valid[b]))
        assert count == len(expected)
        np.testing.assert_allclose(np.asarray(proposals[b])[:count], expected, atol=1e-4)
        assert not np.any(np.asarray(proposals[b])[count:])
