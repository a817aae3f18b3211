"""Greedy non-maximum suppression in ``keras.ops``: batched, padded, fixed shapes (jit-friendly).

The rules are those of TensorFlow's ``NonMaxSuppressionV4`` CPU kernel, image by image
(checked against it in ``tests/test_nms.py``):

- a candidate competes only if its score > ``score_threshold`` (strict; a NaN score never);
- the best remaining score is taken first; equal scores: the lower index first;
- a kept box suppresses the candidates whose IoU with it is > ``iou_threshold`` (strict);
- a box's corners are ordered first, so ``(y2, x2, y1, x1)`` is the same box as
  ``(y1, x1, y2, x2)``; a box of zero area has IoU 0 with every box (it is kept on its
  score, and suppresses nothing).

Each of the ``max_output`` steps takes the best live candidate (an argmax) and suppresses
what overlaps it: O(max_output · N) work and memory O(N), never an N × N IoU matrix. The
loop stops early once no image has a live candidate left. No pre-selection of candidates by
score can bound the work without changing the result: a kept box can come from any rank
(the best ``max_output`` may all suppress each other).
"""

import math

from keras import ops

from rfcn_tf.ops import batched_gather


def non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold):
    """``boxes [B, N, 4]`` yxyx, ``scores [B, N]`` → kept indices ``[B, max_output]`` int32
    (best first, zero padded) and their count ``[B]`` int32."""
    index, _, count = _greedy(boxes, scores[..., None], max_output, iou_threshold, score_threshold)
    return index, count


def class_aware_non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold):
    """Per-class NMS: ``boxes [B, R, 4]`` yxyx shared by the classes, ``scores [B, R, C]`` →
    ``(boxes [B, M, 4], scores [B, M], classes [B, M] int32, count [B] int32)``, best first,
    zero padded, M = ``max_output``.

    ``tf.image.combined_non_max_suppression(boxes[:, :, None], scores, M, M, ...,
    pad_per_class=False, clip_boxes=False)``: with the same bound per class and in all, one
    greedy pass over the R·C (RoI, class) candidates in score order, in which a kept box
    suppresses only candidates of its own class, keeps the same detections. Candidates of
    equal score come in (RoI, class) order (TF's merge leaves that order unspecified).
    """
    classes = ops.shape(scores)[2]
    flat, kept_scores, count = _greedy(boxes, scores, max_output, iou_threshold, score_threshold)
    present = ops.arange(max_output)[None, :] < count[:, None]
    boxes = ops.pad(boxes, [[0, 0], [0, 1], [0, 0]])  # in range also when R = 0
    kept_boxes = ops.where(present[..., None], batched_gather(boxes, flat // classes), 0.0)
    return kept_boxes, kept_scores, flat % classes, count


def _greedy(boxes, scores, max_output, iou_threshold, score_threshold):
    """``boxes [B, R, 4]``, ``scores [B, R, C]`` → the kept candidates' flat indices
    ``r·C + c`` ``[B, M]`` int32 and scores ``[B, M]`` (zero padded), and their count ``[B]``.
    A kept candidate suppresses overlapping candidates of its own column c only."""
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    iou_threshold = ops.cast(iou_threshold, "float32")  # compared in float32, as TF does
    batch, rows, classes = ops.shape(scores)
    # One dead row (score -inf, zero box) at the end: the argmax always has something to
    # take, also when R = 0, and what it takes there is in range.
    live = ops.where(scores > ops.cast(score_threshold, "float32"), scores, -math.inf)
    live = ops.pad(live, [[0, 0], [0, 1], [0, 0]], constant_values=-math.inf)  # [B, R + 1, C]
    boxes = ops.pad(boxes, [[0, 0], [0, 1], [0, 0]])
    low = ops.minimum(boxes[..., :2], boxes[..., 2:])
    high = ops.maximum(boxes[..., :2], boxes[..., 2:])
    area = (high[..., 0] - low[..., 0]) * (high[..., 1] - low[..., 1])  # [B, R + 1]
    # Every image's boxes as rows of one table: one take fetches each image's kept box.
    table = ops.reshape(ops.concatenate([low, high, area[..., None]], axis=-1), (-1, 5))
    offsets = ops.arange(batch, dtype="int32") * (rows + 1)
    row_ids = ops.arange(rows + 1, dtype="int32")
    column_ids = ops.arange(classes, dtype="int32")
    slots = ops.arange(max_output, dtype="int32")

    def body(step, live, index, _):
        flat = ops.reshape(live, (batch, -1))
        best = ops.cast(ops.argmax(flat, axis=1), "int32")  # the first of equal maxima
        found = ops.max(flat, axis=1) > -math.inf
        row = best // classes
        kept = ops.take(table, row + offsets, axis=0)[:, None, :]  # [B, 1, 5]
        # IoU of every box with the kept one, in the arithmetic of TF's kernel. With a
        # zero-area box the overlap is 0: IoU 0 or 0 / 0, neither > the threshold.
        extent = ops.maximum(ops.minimum(high, kept[..., 2:4]) - ops.maximum(low, kept[..., :2]), 0.0)
        overlap = extent[..., 0] * extent[..., 1]
        iou = overlap / (area + kept[..., 4] - overlap)
        # The kept candidate and those it suppresses, in its own column only.
        hit = ((iou > iou_threshold) | (row_ids[None, :] == row[:, None]))[:, :, None] & (
            column_ids[None, None, :] == (best % classes)[:, None, None]
        )
        live = ops.where(hit, -math.inf, live)
        index = ops.where(slots[None, :] == step, ops.where(found, best, -1)[:, None], index)
        return step + 1, live, index, ops.any(found)

    def more(step, live, index, active):
        return (step < max_output) & active

    start = (ops.convert_to_tensor(0, "int32"), live, ops.full((batch, max_output), -1, "int32"), True)
    _, _, index, _ = ops.while_loop(more, body, start)
    present = index >= 0
    index = ops.where(present, index, 0)
    kept_scores = ops.where(present, batched_gather(ops.reshape(live, (batch, -1)), index), 0.0)
    return index, kept_scores, ops.sum(ops.cast(present, "int32"), axis=1)
