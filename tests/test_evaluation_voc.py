"""VOC07 11-point and VOC2010+ area AP: hand-worked cases and a loop-based reference."""

import math

import numpy as np
import pytest

from rfcn_tf.evaluation import evaluate_detections
from rfcn_tf.evaluation.voc import ap_11_point, best_overlaps, paired_iou

CAT, DOG, BIRD, FISH = 0, 1, 2, 3
NAMES = ["cat", "dog", "bird", "fish"]


def hand_case():
    """Four images; boxes are yxyx.

    image 0: cat A [0,0,10,10], cat D difficult [20,20,30,30], dog [0,0,20,20]
    image 1: cat B [0,0,10,10], fish [50,50,60,60]
    image 2: no objects
    image 3: cat C [0,0,10,10], no detections
    """
    ground_truth = [
        {
            "boxes": [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 20, 20]],
            "labels": [CAT, CAT, DOG],
            "difficult": [False, True, False],
        },
        {"boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "labels": [CAT, FISH]},
        {"boxes": np.zeros((0, 4)), "labels": []},
        {"boxes": [[0, 0, 10, 10]], "labels": [CAT], "difficult": [False]},
    ]
    detections = [
        {
            "boxes": [[0, 0, 10, 10], [20, 20, 30, 30], [0, 1, 10, 11], [0, 0, 20, 20]],
            "scores": [0.95, 0.9, 0.85, 0.8],
            "labels": [CAT, CAT, CAT, DOG],
        },
        {
            "boxes": [[0, 0, 10, 5], [100, 100, 110, 110], [0, 0, 10, 10]],
            "scores": [0.7, 0.5, 0.92],
            "labels": [CAT, CAT, DOG],
        },
        {
            "boxes": [[0, 0, 10, 10], [0, 0, 5, 5]],
            "scores": [0.6, 0.9],
            "labels": [CAT, BIRD],
        },
        {"boxes": [], "scores": [], "labels": []},
    ]
    return detections, ground_truth


# cat, by descending score (3 positives A, B, C; D is difficult):
#   0.95 img0 [0,0,10,10]  IoU 1 with A             → TP
#   0.90 img0 on D (difficult)                      → ignored
#   0.85 img0 [0,1,10,11]  IoU 90/110 with A, taken → FP (duplicate)
#   0.70 img1 [0,0,10,5]   IoU 50/100 = 0.5 with B  → TP (≥ threshold)
#   0.60 img2              no objects               → FP
#   0.50 img1 far away     IoU 0                    → FP
#   precision 1, 1/2, 2/3, 2/4, 2/5; recall 1/3, 1/3, 2/3, 2/3, 2/3
#   VOC07: t = 0 … 0.3 → 1 (4 points), t = 0.4 … 0.6 → 2/3 (3 points), t ≥ 0.7 → 0
#          AP = (4 + 3·2/3) / 11 = 6/11
#   area:  envelope 1 up to recall 1/3, 2/3 up to 2/3, then 0 → 1/3·1 + 1/3·2/3 = 5/9
# dog (1 positive): 0.92 img1 → FP; 0.80 img0 → TP; precision 0, 1/2; recall 0, 1
#   VOC07: every t reaches recall 1 at precision 1/2 → 1/2; area: 1·1/2 = 1/2
# bird: no ground truth → NaN, left out of the mean
# fish: one object, no detections → 0
CAT_AP = {"voc07": 6 / 11, "voc": 5 / 9}
DOG_AP = 0.5


@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_hand_case(metric):
    detections, ground_truth = hand_case()
    result = evaluate_detections(detections, ground_truth, metric=metric, class_names=NAMES)
    ap = result["per_class"]
    assert ap["cat"] == pytest.approx(CAT_AP[metric])
    assert ap["dog"] == pytest.approx(DOG_AP)
    assert math.isnan(ap["bird"])
    assert ap["fish"] == 0.0
    assert result["classes_without_ground_truth"] == ["bird"]
    assert result["mAP"] == pytest.approx((CAT_AP[metric] + DOG_AP + 0.0) / 3)
    assert result["num_ground_truth"] == {"cat": 3, "dog": 1, "bird": 0, "fish": 1}
    assert result["num_detections"] == {"cat": 6, "dog": 2, "bird": 1, "fish": 0}
    assert result["num_images"] == 4
    assert result["metric"] == metric
    assert result["iou_threshold"] == 0.5


def test_class_ids_are_keys_without_names():
    detections, ground_truth = hand_case()
    result = evaluate_detections(detections, ground_truth, num_classes=5)
    assert list(result["per_class"]) == [0, 1, 2, 3, 4]
    assert result["classes_without_ground_truth"] == [BIRD, 4]
    assert result["per_class"][CAT] == pytest.approx(6 / 11)


def test_num_classes_inferred_from_labels():
    detections, ground_truth = hand_case()
    result = evaluate_detections(detections, ground_truth)
    assert list(result["per_class"]) == [0, 1, 2, 3]


def test_stricter_iou_threshold_rejects_half_overlap():
    # At 0.6 the 0.70 detection (IoU 0.5 with B) becomes FP: cat is TP, FP, FP, FP, FP
    # with recall 1/3 throughout → VOC07 = 4/11 (t = 0 … 0.3).
    detections, ground_truth = hand_case()
    result = evaluate_detections(detections, ground_truth, iou_threshold=0.6)
    assert result["per_class"][CAT] == pytest.approx(4 / 11)
    assert result["iou_threshold"] == 0.6


def test_best_overlap_decides_difficult():
    # The only detection overlaps difficult Y (IoU 1) more than X (IoU 90/110): it is
    # ignored rather than matched to X, so X is missed → AP 0 (not 1).
    ground_truth = [{"boxes": [[0, 0, 10, 10], [0, 1, 10, 11]], "labels": [0, 0], "difficult": [0, 1]}]
    detections = [{"boxes": [[0, 1, 10, 11]], "scores": [0.9], "labels": [0]}]
    for metric in ("voc07", "voc"):
        result = evaluate_detections(detections, ground_truth, metric=metric)
        assert result["per_class"][0] == 0.0


def test_only_difficult_ground_truth_counts_as_none():
    ground_truth = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "difficult": [True]}]
    detections = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}]
    result = evaluate_detections(detections, ground_truth, num_classes=1)
    assert math.isnan(result["mAP"])
    assert result["classes_without_ground_truth"] == [0]


def test_11_point_counts_a_recall_of_exactly_three_tenths():
    # Recall 3/10 reaches t = 0, 0.1, 0.2, 0.3 → 4/11 (arange(0, 1.1, 0.1) would give 3/11).
    assert ap_11_point(np.array([1.0]), np.array([3 / 10])) == pytest.approx(4 / 11)


def test_paired_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[0, 5, 10, 15], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    # intersection 50, union 150; disjoint; degenerate (union 0) → 0.
    np.testing.assert_allclose(paired_iou(a, b), [1 / 3, 0, 0])


def test_best_overlaps_stays_within_each_image():
    gt_boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10]], float)
    gt_images = np.array([0, 0, 2, 3])
    boxes = np.array([[0, 0, 10, 10]] * 4, float)
    images = np.array([2, 0, 1, 3])
    index, iou = best_overlaps(boxes, images, gt_boxes, gt_images)
    # image 2 → its only object (IoU 0.5); image 0 → tie, first object; image 1 → none.
    np.testing.assert_array_equal(index, [2, 0, -1, 3])
    np.testing.assert_allclose(iou, [0.5, 1, 0, 1])


# --- randomised comparison with a loop-based reading of the VOC definitions ---


def reference_iou(a, b):
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def reference_ap(detections, ground_truth, label, iou_threshold, metric):
    found = []
    for image, det in enumerate(detections):
        for box, score, lab in zip(det["boxes"], det["scores"], det["labels"]):
            if lab == label:
                found.append((score, image, box))
    found.sort(key=lambda item: -item[0])
    positives = sum(
        1
        for gt in ground_truth
        for lab, diff in zip(gt["labels"], gt["difficult"])
        if lab == label and not diff
    )
    if positives == 0:
        return float("nan")
    taken = set()
    outcomes = []  # True for TP, False for FP
    for _, image, box in found:
        gt = ground_truth[image]
        best, best_iou = None, -1.0
        for g, (gbox, lab) in enumerate(zip(gt["boxes"], gt["labels"])):
            if lab == label and reference_iou(box, gbox) > best_iou:
                best, best_iou = g, reference_iou(box, gbox)
        if best is None or best_iou < iou_threshold:
            outcomes.append(False)
        elif gt["difficult"][best]:
            continue
        elif (image, best) in taken:
            outcomes.append(False)
        else:
            taken.add((image, best))
            outcomes.append(True)
    precision, recall, tp = [], [], 0
    for n, outcome in enumerate(outcomes, start=1):
        tp += outcome
        precision.append(tp / n)
        recall.append(tp / positives)
    if metric == "voc07":
        total = 0.0
        for k in range(11):
            reached = [p for p, r in zip(precision, recall) if r >= k / 10]
            total += max(reached) if reached else 0.0
        return total / 11
    ap, previous = 0.0, 0.0
    for i, r in enumerate(recall):
        if r > previous:
            ap += (r - previous) * max(precision[i:])
            previous = r
    return ap


def random_case(rng, num_images, num_classes):
    detections, ground_truth = [], []
    for _ in range(num_images):
        g = rng.integers(0, 6)
        top_left = rng.uniform(0, 80, (g, 2))
        gt_boxes = np.concatenate([top_left, top_left + rng.uniform(5, 40, (g, 2))], 1)
        gt_labels = rng.integers(0, num_classes, g)
        ground_truth.append({"boxes": gt_boxes, "labels": gt_labels, "difficult": rng.random(g) < 0.2})
        # Jittered copies of objects (some twice → duplicates) plus random boxes.
        copies = rng.integers(0, g, rng.integers(0, 2 * g + 1)) if g else np.zeros(0, int)
        jittered = gt_boxes[copies] + rng.normal(0, 3, (len(copies), 4))
        jittered[:, 2:] = np.maximum(jittered[:, 2:], jittered[:, :2] + 1)
        r = rng.integers(0, 4)
        corner = rng.uniform(0, 80, (r, 2))
        noise = np.concatenate([corner, corner + rng.uniform(5, 40, (r, 2))], 1)
        # Most copies keep their object's class; some get a random (possibly wrong) one.
        copy_labels = np.where(
            rng.random(len(copies)) < 0.8,
            gt_labels[copies],
            rng.integers(0, num_classes, len(copies)),
        )
        labels = np.concatenate([copy_labels, rng.integers(0, num_classes, r)]).astype(int)
        boxes = np.concatenate([jittered, noise])
        detections.append({"boxes": boxes, "scores": rng.random(len(boxes)), "labels": labels})
    return detections, ground_truth


@pytest.mark.parametrize("seed", range(12))
def test_random_against_reference(seed):
    rng = np.random.default_rng(seed)
    num_classes = 4
    detections, ground_truth = random_case(rng, int(rng.integers(1, 12)), num_classes)
    for metric in ("voc07", "voc"):
        for threshold in (0.5, 0.7):
            result = evaluate_detections(
                detections, ground_truth, metric=metric,
                num_classes=num_classes, iou_threshold=threshold,
            )  # fmt: skip
            expected = [
                reference_ap(detections, ground_truth, c, threshold, metric) for c in range(num_classes)
            ]
            np.testing.assert_allclose(
                [result["per_class"][c] for c in range(num_classes)], expected, rtol=1e-12
            )
            measured = [e for e in expected if not math.isnan(e)]
            if measured:
                assert result["mAP"] == pytest.approx(np.mean(measured))
