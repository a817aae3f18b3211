"""The neutral NMS (``rfcn_tf.ops.nms``) against TensorFlow's kernels, under every backend;
``ProposalLayer`` and ``DetectionDecoder`` under JAX and PyTorch against TensorFlow.

TensorFlow's results come from the kernels themselves (``NonMaxSuppressionV4`` image by
image, ``combined_non_max_suppression``); the neutral NMS does the same float32 arithmetic
on the same inputs, so its kept indices, boxes and scores must be equal, not close.
"""

import concurrent.futures
import math

import numpy as np
import pytest
import tensorflow as tf

from tests import backend_cases_nms
from tests.backend_helpers import on_backend
from tests.test_detection_reference import decode, random_inputs

pytestmark = pytest.mark.slow  # a subprocess per backend

BACKENDS = ("tensorflow", "jax", "torch")


def draw_boxes(rng, batch, num):
    """``[batch, num, 4]`` boxes and ``[batch, num]`` scores, one kind of image per index
    mod 4: clustered boxes (some flipped, some of zero area) with distinct scores; small
    integer boxes (exact IoUs such as 1/2, flipped and empty ones) with scores on a 0.1
    grid (ties, and scores equal to the thresholds); copies of one box; clustered boxes
    with tied scores and NaNs."""
    boxes = np.zeros((batch, num, 4), np.float32)
    scores = np.zeros((batch, num), np.float32)
    for b in range(batch):
        kind = b % 4
        if kind == 1:
            boxes[b] = rng.integers(0, 7, (num, 4))
            scores[b] = rng.integers(0, 11, num) / 10
            continue
        centres = rng.uniform(0, 100, (3, 2))[rng.integers(0, 3, num)] + rng.normal(0, 8, (num, 2))
        sizes = rng.uniform(2, 40, (num, 2)) * (rng.random((num, 1)) > 0.1)  # 10 % empty
        corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
        flip = rng.random((num, 2)) < 0.2
        corners[:, [0, 2]] = np.where(flip[:, :1], corners[:, [2, 0]], corners[:, [0, 2]])
        corners[:, [1, 3]] = np.where(flip[:, 1:], corners[:, [3, 1]], corners[:, [1, 3]])
        boxes[b] = corners if kind != 2 else corners[:1]
        scores[b] = rng.uniform(0, 1, num) if kind != 3 else rng.integers(0, 5, num) / 4
        if kind == 3:
            scores[b, rng.random(num) < 0.05] = np.nan
    return boxes, scores


def nms_cases():
    """(boxes, scores, max_output, iou_threshold, score_threshold) per case; the last one
    holds the hand-made image."""
    rng = np.random.default_rng(0)
    cases = []
    for num in (0, 5, 60, 300):  # 5 < max_output
        for iou in (0.0, 0.3, 0.5, 0.7, 1.0):
            for score in (-math.inf, 0.3, 0.5):
                cases.append((*draw_boxes(rng, 8, num), 20, iou, score))
    boxes, scores = draw_boxes(rng, 8, 60)
    boxes[0, : len(HAND_BOXES)], scores[0] = HAND_BOXES, 0.0
    scores[0, : len(HAND_BOXES)] = HAND_SCORES
    cases.append((boxes, scores, 20, 0.5, 0.5))
    return cases


# Score 0.5 == threshold: dropped (6); IoU 50/100 == threshold: kept (1); equal scores: the
# lower index first (2 before 3, which it suppresses); a zero-area box: kept, suppresses
# nothing (4); a flipped box: the same box, suppressed by its twin (5 by 0).
HAND_BOXES = [
    [0, 0, 10, 10],
    [0, 0, 10, 5],
    [30, 30, 40, 40],
    [30, 30, 40, 40],
    [5, 5, 5, 5],
    [10, 10, 0, 0],
    [50, 50, 60, 60],
]
HAND_SCORES = [0.9, 0.8, 0.7, 0.7, 0.95, 0.6, 0.5]
HAND_KEPT = [4, 0, 1, 2]


def aware_cases():
    """(boxes [B, R, 4], scores [B, R, C] with no equal scores, max_output, iou, score)."""
    rng = np.random.default_rng(1)
    cases = []
    for rois, classes, max_output in ((0, 3, 10), (7, 1, 10), (50, 4, 10), (120, 6, 300)):
        for iou, score in ((0.3, 0.0), (0.6, 0.6), (0.5, 0.2)):
            boxes, _ = draw_boxes(rng, 4, rois)
            scores = rng.uniform(0, 1, (4, rois, classes)).astype(np.float32)
            cases.append((boxes, scores, max_output, iou, score))
    return cases


def proposal_inputs(seed=0, batch=2, height=6, width=8, anchors_per_cell=9):
    """RPN outputs whose proposals are clear of the NMS threshold: no two of the pre-NMS
    candidates have an IoU within 1e-5 of 0.7 (float32 decoding differs by backend in the
    last bits, ~1e-6 of an IoU), and none is within 1e-3 px of zero size after clipping."""
    rng = np.random.default_rng(seed)
    num = height * width * anchors_per_cell
    sizes = np.array([[128, 128], [96, 112]], np.int32)[:batch]
    for _ in range(100):
        corner = rng.uniform(-20, 130, (num, 2))
        anchors = np.concatenate([corner, corner + rng.uniform(8, 60, (num, 2))], -1).astype(np.float32)
        logits = rng.normal(size=(batch, height, width, anchors_per_cell)).astype(np.float32)
        deltas = rng.normal(0, 0.3, (batch, height, width, 4 * anchors_per_cell)).astype(np.float32)
        if all(_clear(anchors, logits[b].ravel(), deltas[b].reshape(-1, 4), sizes[b]) for b in range(batch)):
            return dict(logits=logits, deltas=deltas, anchors=anchors, sizes=sizes)
    raise AssertionError("could not draw unambiguous proposals")


def _clear(anchors, logits, deltas, size, margin=1e-5):
    height, width = (float(s) for s in size)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    inside = (centres[:, 0] < height) & (centres[:, 1] < width)
    order = [i for i in np.argsort(-logits) if inside[i]][: backend_cases_nms.PROPOSALS["pre_nms_test"]]
    boxes = np.stack(
        [np.clip(decode(anchors[i], deltas[i], (1, 1, 1, 1)), 0, [height, width] * 2) for i in order]
    )
    extent = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if np.any((extent > 0) & (extent < 1e-3)):
        return False
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = np.prod(np.maximum(high - low, 0), -1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = overlap / (area[:, None] + area[None, :] - overlap)
    return not np.any(np.abs(iou - backend_cases_nms.PROPOSALS["nms_iou"]) < margin)


def all_inputs():
    arrays = {}
    for i, (boxes, scores, m, iou, score) in enumerate(nms_cases()):
        arrays.update(
            {f"nms{i}_boxes": boxes, f"nms{i}_scores": scores, f"nms{i}_settings": np.array([m, iou, score])}
        )
    for i, (boxes, scores, m, iou, score) in enumerate(aware_cases()):
        arrays.update(
            {
                f"aware{i}_boxes": boxes,
                f"aware{i}_scores": scores,
                f"aware{i}_settings": np.array([m, iou, score]),
            }
        )
    arrays.update({f"proposals_{k}": v for k, v in proposal_inputs().items()})
    for seed in (0, 1, 2):
        rois, valid, logits, deltas, sizes = random_inputs(seed)
        scales = np.array([[1.0, 1.0], [0.5, 1.25]], np.float32)
        case = dict(rois=rois, valid=valid, logits=logits, deltas=deltas, sizes=sizes, scales=scales)
        arrays.update({f"decoder{seed}_{k}": v for k, v in case.items()})
    return arrays


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case under every backend: TensorFlow in this process, the others in one
    subprocess each, side by side."""
    arrays = all_inputs()
    tmp = tmp_path_factory.mktemp("nms")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        others = {
            backend: pool.submit(on_backend, backend, "tests.backend_cases_nms:run_all", tmp, **arrays)
            for backend in BACKENDS[1:]
        }
        out = {"tensorflow": backend_cases_nms.run_all(**arrays)}
        return {**out, **{backend: job.result() for backend, job in others.items()}}


def tf_nms(boxes, scores, max_output, iou, score):
    """NonMaxSuppressionV4 image by image: indices [B, M], counts [B]."""
    kept = [
        tf.raw_ops.NonMaxSuppressionV4(
            boxes=b,
            scores=s,
            max_output_size=max_output,
            iou_threshold=iou,
            score_threshold=score,
            pad_to_max_output_size=True,
        )
        for b, s in zip(boxes, scores)
    ]
    return np.stack([k.numpy() for k, _ in kept]), np.array([int(c) for _, c in kept])


@pytest.mark.parametrize("backend", BACKENDS)
def test_neutral_nms_equals_non_max_suppression_v4(results, backend):
    out = results[backend]
    cases = nms_cases()
    suppressed = 0
    for i, (boxes, scores, m, iou, score) in enumerate(cases):
        index, count = tf_nms(boxes, scores, m, iou, score)
        np.testing.assert_array_equal(out[f"nms{i}_count"], count, err_msg=f"case {i}")
        np.testing.assert_array_equal(out[f"nms{i}_index"], index, err_msg=f"case {i}")
        assert out[f"nms{i}_index"].dtype == np.int32 and out[f"nms{i}_count"].dtype == np.int32
        live = np.sum(scores > score, axis=1)
        suppressed += np.sum(count < np.minimum(live, m))
    assert suppressed > 100  # most cases do suppress something
    np.testing.assert_array_equal(out[f"nms{len(cases) - 1}_index"][0, :4], HAND_KEPT)
    assert out[f"nms{len(cases) - 1}_count"][0] == len(HAND_KEPT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_aware_nms_equals_combined_non_max_suppression(results, backend):
    out = results[backend]
    for i, (boxes, scores, m, iou, score) in enumerate(aware_cases()):
        ref = tf.image.combined_non_max_suppression(
            boxes[:, :, None], scores, m, m, iou, score, pad_per_class=False, clip_boxes=False
        )
        message = f"case {i}"
        np.testing.assert_array_equal(out[f"aware{i}_count"], ref.valid_detections.numpy(), err_msg=message)
        np.testing.assert_array_equal(out[f"aware{i}_boxes"], ref.nmsed_boxes.numpy(), err_msg=message)
        np.testing.assert_array_equal(out[f"aware{i}_scores"], ref.nmsed_scores.numpy(), err_msg=message)
        np.testing.assert_array_equal(out[f"aware{i}_classes"], ref.nmsed_classes.numpy(), err_msg=message)


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_proposals_equal_tensorflows(results, backend):
    ref, out = results["tensorflow"], results[backend]
    valid = ref["proposals_valid"]
    assert 20 < valid.sum(1).min() < backend_cases_nms.PROPOSALS["post_nms_test"]  # not all full
    np.testing.assert_array_equal(out["proposals_valid"], valid)
    # The scores are the input logits, gathered: equal. The boxes are decoded with each
    # backend's exp, a few float32 ulps apart on coordinates below 130 px.
    np.testing.assert_array_equal(out["proposals_scores"], ref["proposals_scores"])
    np.testing.assert_allclose(out["proposals_boxes"], ref["proposals_boxes"], atol=1e-3, rtol=0)
    if backend == "jax":  # only the explicit sum(logits) term has a gradient
        np.testing.assert_array_equal(out["proposals_gradient"], 1.0)


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_decoder_equals_tensorflows(results, backend):
    ref, out = results["tensorflow"], results[backend]
    for seed in (0, 1, 2):
        key = f"decoder{seed}_"
        assert ref[key + "num_detections"].min() > 5
        np.testing.assert_array_equal(out[key + "num_detections"], ref[key + "num_detections"])
        np.testing.assert_array_equal(out[key + "labels"], ref[key + "labels"])
        # float32 softmax and decoding, a few ulps apart by backend (scores < 1, boxes < 600 px)
        np.testing.assert_allclose(out[key + "confidence"], ref[key + "confidence"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[key + "boxes"], ref[key + "boxes"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbolic_outputs(results, backend):
    """A functional model can hold both layers on every backend (traced symbolically, the
    anchors' count and h·w·A, or the RoI counts of the inputs, are unrelated unknowns)."""
    post = backend_cases_nms.PROPOSALS["post_nms_test"]
    # rows: proposals, scores, valid, boxes, confidence, labels, num_detections (-2: no axis)
    expected = [
        [-1, post, 4],
        [-1, post, -2],
        [-1, post, -2],
        [-1, 7, 4],
        [-1, 7, -2],
        [-1, 7, -2],
        [-1, -2, -2],
    ]
    np.testing.assert_array_equal(results[backend]["symbolic_shapes"], expected)
    dtypes = ["float32", "float32", "bool", "float32", "float32", "int32", "int32"]
    assert results[backend]["symbolic_dtypes"].tolist() == dtypes
