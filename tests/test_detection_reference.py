"""``DetectionDecoder`` against an independent plain-numpy reference.

The reference is written from the definition, one image at a time in float64: softmax
over C+1 logits with the background column dropped, invalid RoIs scored 0, deltas × std
with the log-size deltas clamped at log(1000/16), decoding in keras' centre/size
convention (centre += d·size, size ×= exp(d); no "+1"), clipping to the image, greedy
per-class NMS (suppressed when IoU > nms_iou) over scores > score_threshold (both strict,
as in TF's CombinedNonMaxSuppression CPU kernel), then all classes merged by score and
the best ``max_detections`` kept, padded with boxes 0, confidence 0, labels −1.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.layers.detection import DetectionDecoder

BOX_STD = (0.1, 0.1, 0.2, 0.2)
NMS_IOU = 0.3
SCORE_THRESHOLD = 0.05
MAX_DETECTIONS = 100
MAX_LOG_SCALE = math.log(1000.0 / 16.0)


# ---------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decode(roi, delta, std=BOX_STD):
    """One yxyx RoI + one (dy, dx, dh, dw) delta (scaled by std) → yxyx box."""
    dy, dx, dh, dw = np.asarray(delta, np.float64) * np.asarray(std, np.float64)
    dh, dw = min(dh, MAX_LOG_SCALE), min(dw, MAX_LOG_SCALE)
    h, w = roi[2] - roi[0], roi[3] - roi[1]
    cy, cx = roi[0] + 0.5 * h, roi[1] + 0.5 * w
    cy, cx = cy + dy * h, cx + dx * w
    h, w = h * math.exp(dh), w * math.exp(dw)
    return np.array([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w])


def clip(box, height, width):
    return np.clip(box, 0.0, [height, width, height, width])


def iou(a, b):
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(ih, 0.0) * max(iw, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes, scores, iou_threshold, score_threshold):
    """Greedy NMS of one class → kept indices, best first."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= iou_threshold for k in kept):
            kept.append(i)
    return kept


def image_scores_and_boxes(rois, valid, logits, deltas, image_size, box_std=BOX_STD):
    """One image → (scores [R, C] without background, clipped decoded boxes [R, 4])."""
    scores = softmax(logits.astype(np.float64))[:, 1:]
    scores[~valid] = 0.0
    height, width = (float(v) for v in image_size)
    boxes = np.stack(
        [clip(decode(r, d, box_std), height, width) for r, d in zip(rois.astype(np.float64), deltas)]
    )
    return scores, boxes


def reference_decode(
    rois,
    valid,
    logits,
    deltas,
    image_sizes,
    scales=None,
    box_std=BOX_STD,
    nms_iou=NMS_IOU,
    score_threshold=SCORE_THRESHOLD,
    max_detections=MAX_DETECTIONS,
):
    batch = rois.shape[0]
    out = {
        "boxes": np.zeros((batch, max_detections, 4)),
        "confidence": np.zeros((batch, max_detections)),
        "labels": np.full((batch, max_detections), -1, np.int32),
        "num_detections": np.zeros(batch, np.int32),
    }
    for b in range(batch):
        scores, boxes = image_scores_and_boxes(
            rois[b], valid[b], logits[b], deltas[b], image_sizes[b], box_std
        )
        candidates = []
        for c in range(scores.shape[1]):
            for i in nms(boxes, scores[:, c], nms_iou, score_threshold)[:max_detections]:
                candidates.append((scores[i, c], c, boxes[i]))
        candidates.sort(key=lambda t: -t[0])
        candidates = candidates[:max_detections]
        out["num_detections"][b] = len(candidates)
        for m, (score, label, box) in enumerate(candidates):
            if scales is not None:
                sy, sx = (float(s) for s in scales[b])
                box = box / np.array([sy, sx, sy, sx])
            out["boxes"][b, m] = box
            out["confidence"][b, m] = score
            out["labels"][b, m] = label
    return out


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def make_decoder(**overrides):
    kwargs = dict(
        box_std=BOX_STD, nms_iou=NMS_IOU, score_threshold=SCORE_THRESHOLD, max_detections=MAX_DETECTIONS
    )
    kwargs.update(overrides)
    return DetectionDecoder(**kwargs)


def run(decoder, rois, valid, logits, deltas, image_sizes, scales=None):
    out = decoder(
        tf.constant(rois, tf.float32),
        tf.constant(valid, tf.bool),
        tf.constant(logits, tf.float32),
        tf.constant(deltas, tf.float32),
        tf.constant(image_sizes, tf.int32),
        None if scales is None else tf.constant(scales, tf.float32),
    )
    return {k: v.numpy() for k, v in out.items()}


def assert_matches(out, ref):
    np.testing.assert_array_equal(out["num_detections"], ref["num_detections"])
    np.testing.assert_array_equal(out["labels"], ref["labels"])
    np.testing.assert_allclose(out["confidence"], ref["confidence"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["boxes"], ref["boxes"], atol=1e-3, rtol=0)
    assert out["labels"].dtype == np.int32
    assert out["boxes"].shape == ref["boxes"].shape


def _ambiguous(scores, boxes, valid, margin=1e-4):
    """True when float32 rounding could flip a decision: a score near the threshold, two
    scores (nearly) tied, or an IoU near the NMS threshold."""
    live = scores[valid].ravel()
    if np.any(np.abs(live - SCORE_THRESHOLD) < margin):
        return True
    above = np.sort(live[live > SCORE_THRESHOLD])
    if np.any(np.diff(above) < margin):
        return True
    idx = np.flatnonzero(valid)
    return any(
        abs(iou(boxes[i], boxes[j]) - NMS_IOU) < margin for n, i in enumerate(idx) for j in idx[n + 1 :]
    )


def random_inputs(seed, batch=2, num_rois=40, num_classes=3, image_sizes=((200, 300), (150, 260))):
    """Random RoIs (some invalid, some crossing the border after decoding) and logits
    spread widely enough that scores are distinct and clear of both thresholds."""
    rng = np.random.default_rng(seed)
    image_sizes = np.array(image_sizes[:batch], np.int32)
    for _ in range(100):
        rois, valid, logits, deltas = [], [], [], []
        for b in range(batch):
            h, w = image_sizes[b]
            cy, cx = rng.uniform(0, h, num_rois), rng.uniform(0, w, num_rois)
            bh, bw = rng.uniform(10, 90, num_rois), rng.uniform(10, 90, num_rois)
            roi = np.stack([cy - bh / 2, cx - bw / 2, cy + bh / 2, cx + bw / 2], -1)
            rois.append(np.clip(roi, 0, [h, w, h, w]))
            valid.append(rng.random(num_rois) < 0.8)
            logits.append(rng.normal(0.0, 3.0, (num_rois, num_classes + 1)))
            deltas.append(rng.normal(0.0, 1.5, (num_rois, 4)))
        args = [
            np.array(rois, np.float32),
            np.array(valid),
            np.array(logits, np.float32),
            np.array(deltas, np.float32),
            image_sizes,
        ]
        clear = True
        for b in range(batch):
            scores, boxes = image_scores_and_boxes(*(a[b] for a in args))
            clear &= not _ambiguous(scores, boxes, args[1][b])
        if clear:
            return args
    raise AssertionError("could not draw unambiguous inputs")


def one_image(rois, logits, deltas=None, valid=None, image_size=(100, 100)):
    """Stack one image's hand-built rows into a batch of 1."""
    rois = np.array([rois], np.float32)
    logits = np.array([logits], np.float32)
    deltas = np.zeros_like(rois) if deltas is None else np.array([deltas], np.float32)
    valid = np.ones(rois.shape[:2], bool) if valid is None else np.array([valid], bool)
    return rois, valid, logits, deltas, np.array([image_size], np.int32)


def logit_for(p, num_classes=1, column=1):
    """Logits whose softmax gives probability ``p`` to ``column`` (rest shared evenly)."""
    logits = np.zeros(num_classes + 1)
    logits[column] = math.log(p * num_classes / (1.0 - p))
    return logits


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_inputs_match_reference(seed):
    args = random_inputs(seed)
    out = run(make_decoder(), *args)
    ref = reference_decode(*args)
    assert ref["num_detections"].min() > 5  # the case exercises NMS and merging
    assert len(np.unique(ref["labels"][ref["labels"] >= 0])) == 3
    assert_matches(out, ref)


def test_background_column_is_dropped():
    # RoI 0: background dominates → nothing. RoI 1: class 2 (column 3) dominates.
    args = one_image([[10, 10, 40, 40], [50, 50, 90, 90]], [[10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 10.0]])
    out = run(make_decoder(), *args)
    assert_matches(out, reference_decode(*args))
    assert out["num_detections"][0] == 1
    assert out["labels"][0, 0] == 2
    np.testing.assert_allclose(out["boxes"][0, 0], [50, 50, 90, 90], atol=1e-3)
    np.testing.assert_allclose(out["confidence"][0, 0], softmax(np.array([0, 0, 0, 10.0]))[3], atol=1e-5)


def test_log_size_delta_clamp():
    # A 4×4 RoI centred in a 1000×1000 image: dh·0.2 = 20 is clamped to log(62.5), so the
    # box grows to 250 px tall — well inside the image, unlike the unclamped exp(20)·4.
    # dw·0.2 = 1 is below the clamp.
    args = one_image(
        [[498, 498, 502, 502]], [logit_for(0.9)], deltas=[[0, 0, 100.0, 5.0]], image_size=(1000, 1000)
    )
    out = run(make_decoder(), *args)
    half_w = 2.0 * math.e
    np.testing.assert_allclose(out["boxes"][0, 0], [375, 500 - half_w, 625, 500 + half_w], atol=1e-3)
    assert_matches(out, reference_decode(*args))
    # Against the border the clamped box is clipped: shifted down by 0.1·4·400 px.
    args = one_image(
        [[498, 498, 502, 502]], [logit_for(0.9)], deltas=[[400.0, 0, 100.0, 5.0]], image_size=(1000, 1000)
    )
    out = run(make_decoder(), *args)
    np.testing.assert_allclose(out["boxes"][0, 0], [535, 500 - half_w, 785, 500 + half_w], atol=1e-3)
    assert_matches(out, reference_decode(*args))
    args = one_image(
        [[498, 498, 502, 502]], [logit_for(0.9)], deltas=[[1000.0, 0, 100.0, 5.0]], image_size=(1000, 1000)
    )
    out = run(make_decoder(), *args)
    np.testing.assert_allclose(out["boxes"][0, 0], [775, 500 - half_w, 1000, 500 + half_w], atol=1e-3)
    assert_matches(out, reference_decode(*args))


BOX = [20, 20, 30, 30]
IOU_040 = [20, 20, 30, 24]  # nested, 40 / 100
IOU_025 = [20, 20, 25, 25]  # nested, 25 / 100


@pytest.mark.parametrize(
    "second, same_class, nms_iou, expected_count",
    [
        (IOU_040, True, 0.3, 1),  # IoU 0.4 > 0.3 within a class → suppressed
        (IOU_040, False, 0.3, 2),  # other class → no suppression
        (IOU_025, True, 0.3, 2),  # IoU 0.25 ≤ 0.3 → kept
        (IOU_040, True, 0.4, 2),  # IoU exactly at the threshold is not "exceeding" it
    ],
)
def test_per_class_nms(second, same_class, nms_iou, expected_count):
    first_logits = [0.0, 4.0, 0.0]  # class 0, the higher score
    second_logits = [0.0, 3.0, 0.0] if same_class else [0.0, 0.0, 3.0]
    args = one_image([BOX, second], [first_logits, second_logits])
    out = run(make_decoder(nms_iou=nms_iou), *args)
    assert_matches(out, reference_decode(*args, nms_iou=nms_iou))
    assert out["num_detections"][0] == expected_count
    np.testing.assert_allclose(out["boxes"][0, 0], BOX, atol=1e-4)
    assert out["labels"][0, 0] == 0
    if expected_count == 2:
        np.testing.assert_allclose(out["boxes"][0, 1], second, atol=1e-4)
        assert out["labels"][0, 1] == (0 if same_class else 1)
    # The other column's scores (≤ 0.045) stay under the threshold: nothing else comes out.
    assert np.all(out["labels"][0, expected_count:] == -1)


def test_score_threshold():
    # Non-overlapping boxes, one class: 0.06 and 0.5 kept, 0.04 dropped.
    rois = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    logits = [logit_for(0.06), logit_for(0.04), logit_for(0.5)]
    args = one_image(rois, logits)
    out = run(make_decoder(), *args)
    assert_matches(out, reference_decode(*args))
    assert out["num_detections"][0] == 2
    np.testing.assert_allclose(out["confidence"][0, :2], [0.5, 0.06], atol=1e-5)
    np.testing.assert_allclose(out["boxes"][0, :2], [rois[2], rois[0]], atol=1e-4)
    # The threshold is strict: softmax([0, 0]) is exactly 0.5 and is dropped at 0.5.
    out = run(make_decoder(score_threshold=0.5), *args)
    assert_matches(out, reference_decode(*args, score_threshold=0.5))
    assert out["num_detections"][0] == 0
    assert np.all(out["labels"] == -1) and np.all(out["boxes"] == 0)


def test_top_max_detections_in_order():
    # 16 disjoint boxes in a 4×4 grid, one score each spread over the 3 classes.
    rng = np.random.default_rng(5)
    probs = rng.permutation(np.linspace(0.3, 0.9, 16))
    rois, logits = [], []
    for k, p in enumerate(probs):
        y, x = divmod(k, 4)
        rois.append([25 * y, 25 * x, 25 * y + 20, 25 * x + 20])
        logits.append(logit_for(p, num_classes=3, column=1 + k % 3))
    args = one_image(rois, logits)
    out = run(make_decoder(max_detections=5), *args)
    assert_matches(out, reference_decode(*args, max_detections=5))
    best = np.argsort(-probs)[:5]
    assert out["num_detections"][0] == 5
    assert out["boxes"].shape == (1, 5, 4)
    np.testing.assert_allclose(out["confidence"][0], probs[best], atol=1e-5)
    np.testing.assert_allclose(out["boxes"][0], np.array(rois, np.float32)[best], atol=1e-4)
    np.testing.assert_array_equal(out["labels"][0], best % 3)


def test_invalid_rois_never_appear():
    # Invalid RoIs carry the highest scores: copies of the valid boxes (which would
    # suppress them) and boxes in the bottom-right corner, where no valid RoI lies.
    valid_rois = [[0, 0, 20, 20], [0, 30, 20, 50], [30, 0, 50, 20]]
    corner = [[70, 70, 90, 90], [75, 60, 95, 80]]
    rois = valid_rois + valid_rois + corner
    valid_logits = np.array([[0.0, 2.0, 0.1], [0.0, 2.5, 0.2], [0.0, 3.0, 0.3]])
    logits = np.concatenate([valid_logits, [[0.0, 8.0, 7.0]] * 5])
    valid = [True] * 3 + [False] * 5
    args = one_image(rois, logits, valid=valid)
    out = run(make_decoder(), *args)
    assert_matches(out, reference_decode(*args))
    count = out["num_detections"][0]
    assert count == 6  # 3 valid boxes × 2 classes, every one of them > 0.05
    np.testing.assert_allclose(
        out["confidence"][0, :count], np.sort(softmax(valid_logits)[:, 1:].ravel())[::-1], atol=1e-5
    )
    assert np.all(out["boxes"][0, :count, 2] <= 50)
    # Random batches: every output box is (up to decoding) a valid RoI's box.
    args = random_inputs(11)
    out = run(make_decoder(), *args)
    assert_matches(out, reference_decode(*args))
    for b in range(2):
        _, boxes = image_scores_and_boxes(*(a[b] for a in args))
        for box in out["boxes"][b, : out["num_detections"][b]]:
            source = np.argmin(np.abs(boxes - box).sum(-1))
            assert args[1][b, source]


def test_scales_divide_boxes_per_axis():
    args = random_inputs(7)
    scales = np.array([[2.0, 4.0], [0.5, 1.25]], np.float32)
    out = run(make_decoder(), *args, scales=scales)
    assert_matches(out, reference_decode(*args, scales=scales))
    unscaled = run(make_decoder(), *args)
    np.testing.assert_allclose(out["boxes"], unscaled["boxes"] / np.tile(scales, 2)[:, None], atol=1e-4)
    np.testing.assert_array_equal(out["labels"], unscaled["labels"])
    np.testing.assert_allclose(out["confidence"], unscaled["confidence"], atol=0)
