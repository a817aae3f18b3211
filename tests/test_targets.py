"""Anchor/RoI targets, the balanced sampler and OHEM against hand-built cases and numpy."""

import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import targets
from tests import reference_targets as ref

SEED = tf.constant([7, 3], tf.int32)
STD = (0.1, 0.1, 0.2, 0.2)

# Hand-built anchors for 100×100 images.
ANCHORS = np.array(
    [
        [10, 10, 50, 54],  # 0: IoU 0.909 with gt A → positive
        [60, 50, 80, 100],  # 1: IoU 0.4 with gt B, its best inside anchor → positive
        [0, 60, 20, 100],  # 2: no overlap → negative (equals a padded gt row of image 0)
        [10, 10, 50, 80],  # 3: IoU 0.571 with gt A, not its best → ignored
        [10, -2, 50, 50],  # 4: IoU 0.769 with gt A but crosses the border → ignored
        [60, 60, 80, 101],  # 5: IoU 0.488 with gt B (beats anchor 1) but crosses the border
        [20, 0, 40, 40],  # 6: IoU 0.5 with gt C, tied best → positive in image 2
        [20, 20, 40, 60],  # 7: IoU 0.5 with gt C, tied best → positive in image 2
    ],
    np.float32,
)
GT_A, GT_B, GT_C = [10, 10, 50, 50], [60, 60, 80, 80], [20, 20, 40, 40]
HAND_GT_BOXES = np.array(
    [
        [GT_A, GT_B, ANCHORS[2]],  # the third row is padding
        [GT_A, GT_B, ANCHORS[2]],  # all rows padding: an image without gt
        [GT_C, [0, 0, 0, 0], [0, 0, 0, 0]],
    ],
    np.float32,
)
HAND_GT_LABELS = np.array([[0, 1, -1], [-1, -1, -1], [2, -1, -1]], np.int32)
HAND_SIZES = np.array([[100, 100]] * 3, np.int32)


def test_anchor_targets_hand_built_rules():
    labels, box_targets = targets.assign_anchor_targets(
        ANCHORS, HAND_GT_BOXES, HAND_GT_LABELS, HAND_SIZES, SEED
    )
    np.testing.assert_array_equal(
        labels.numpy(),
        [
            [1, 1, 0, -1, -1, -1, -1, -1],  # anchors 6, 7: IoU 0.333 with gt A → in-between
            [0, 0, 0, 0, -1, -1, 0, 0],
            [0, 0, 0, 0, -1, -1, 1, 1],
        ],
    )
    expected = np.zeros((3, 8, 4), np.float32)
    expected[0, 0] = [0.0, -2.0 / 44.0, 0.0, np.log(40.0 / 44.0)]
    expected[0, 1] = [0.0, -0.1, 0.0, np.log(0.4)]
    expected[2, 6] = [0.0, 0.25, 0.0, np.log(0.5)]
    expected[2, 7] = [0.0, -0.25, 0.0, np.log(0.5)]
    np.testing.assert_allclose(box_targets.numpy(), expected, atol=1e-6)


def test_anchor_targets_without_any_gt_sample_inside_negatives():
    sizes = np.array([[100, 100], [100, 60]], np.int32)  # image 1 is narrower than the batch
    no_boxes, no_labels = np.zeros([2, 0, 4], np.float32), np.zeros([2, 0], np.int32)
    labels, box_targets = targets.assign_anchor_targets(
        ANCHORS, no_boxes, no_labels, sizes, SEED, batch_size=100
    )
    inside = [(ANCHORS[:, :2] >= 0).all(1) & (ANCHORS[:, 2] <= h) & (ANCHORS[:, 3] <= w) for h, w in sizes]
    np.testing.assert_array_equal(labels.numpy(), np.where(inside, 0, -1))
    assert not box_targets.numpy().any()

    labels, _ = targets.assign_anchor_targets(ANCHORS, no_boxes, no_labels, sizes, SEED, batch_size=3)
    np.testing.assert_array_equal((labels.numpy() == 0).sum(axis=1), [3, 3])
    assert ((labels.numpy() == 0) <= np.array(inside)).all()


def _near_copies(box, count, rng, jitter):
    return np.asarray(box) + rng.uniform(-jitter, jitter, size=(count, 4))


def test_anchor_sampling_caps_positives_and_total():
    rng = np.random.default_rng(0)
    gt = np.array([50, 50, 150, 150], np.float32)
    anchors = np.concatenate(
        [
            _near_copies(gt, 50, rng, 3.0),  # IoU > 0.88: positives
            _near_copies([160, 20, 190, 50], 100, rng, 5.0),  # far away: negatives
        ]
    ).astype(np.float32)
    args = (anchors, gt[None, None], np.zeros([1, 1], np.int32), np.array([[200, 200]]), SEED)
    labels, _ = targets.assign_anchor_targets(*args, batch_size=32)
    assert (labels.numpy() == 1).sum() == 16
    assert (labels.numpy() == 0).sum() == 16
    labels, _ = targets.assign_anchor_targets(*args, batch_size=200)
    assert (labels.numpy() == 1).sum() == 50
    assert (labels.numpy() == 0).sum() == 100


def _random_anchor_case(rng, batch=3, max_gt=5, image=128):
    """Grid anchors plus near copies of each gt; image 0 has no gt; padded rows hold boxes."""
    centres = np.arange(0, image, 8, dtype=np.float32) + 4.0
    anchors = [
        [cy - s / 2, cx - s / 2, cy + s / 2, cx + s / 2]
        for s in (16.0, 32.0, 64.0)
        for cy in centres
        for cx in centres
    ]
    gt_boxes = np.zeros((batch, max_gt, 4), np.float32)
    gt_labels = np.full((batch, max_gt), -1, np.int32)
    sizes = rng.integers(90, image + 1, size=(batch, 2)).astype(np.int32)
    for b in range(batch):
        num = 0 if b == 0 else rng.integers(1, max_gt + 1)
        for n in range(max_gt):
            h, w = rng.uniform(8, 70, size=2)
            y, x = rng.uniform(0, sizes[b, 0] - h), rng.uniform(0, sizes[b, 1] - w)
            gt_boxes[b, n] = [y, x, y + h, x + w]
            if n < num:
                gt_labels[b, n] = rng.integers(0, 4)
                anchors.extend(_near_copies(gt_boxes[b, n], 2, rng, 2.0))
    return np.array(anchors, np.float32), gt_boxes, gt_labels, sizes


def _full_anchor_labelling(anchors, gt_boxes, gt_labels, sizes, allowed_border=0.0):
    # Sampling everything (batch_size ≥ A, no positive cap) leaves the full labelling.
    return targets.assign_anchor_targets(
        anchors,
        gt_boxes,
        gt_labels,
        sizes,
        SEED,
        batch_size=len(anchors),
        positive_fraction=1.0,
        allowed_border=allowed_border,
    )


@pytest.mark.parametrize("allowed_border", [0.0, 8.0, None])
def test_anchor_full_labelling_matches_reference(allowed_border):
    rng = np.random.default_rng(1)
    for _ in range(3):
        anchors, gt_boxes, gt_labels, sizes = _random_anchor_case(rng)
        labels, box_targets = _full_anchor_labelling(anchors, gt_boxes, gt_labels, sizes, allowed_border)
        for b in range(len(gt_boxes)):
            want_labels, want_targets = ref.anchor_labels(
                anchors, gt_boxes[b], gt_labels[b], sizes[b], allowed_border=allowed_border
            )
            np.testing.assert_array_equal(labels.numpy()[b], want_labels)
            np.testing.assert_allclose(box_targets.numpy()[b], want_targets, atol=1e-4)
        assert (labels.numpy() == 1).any() and (labels.numpy() == 0).any()
        assert (labels.numpy() == -1).any()


def test_anchor_sampling_is_a_seeded_subset_of_the_full_labelling():
    rng = np.random.default_rng(2)
    case = _random_anchor_case(rng)
    full, full_targets = (t.numpy() for t in _full_anchor_labelling(*case))

    def sample(seed):
        labels, box_targets = targets.assign_anchor_targets(
            *case, seed=tf.constant(seed, tf.int64), batch_size=16, positive_fraction=0.5
        )
        return labels.numpy(), box_targets.numpy()

    labels, box_targets = sample([5, 9])
    assert ((labels == 1) <= (full == 1)).all() and ((labels == 0) <= (full == 0)).all()
    num_pos = np.minimum((full == 1).sum(1), 8)
    np.testing.assert_array_equal((labels == 1).sum(1), num_pos)
    np.testing.assert_array_equal((labels == 0).sum(1), np.minimum((full == 0).sum(1), 16 - num_pos))
    np.testing.assert_array_equal(box_targets, np.where((labels == 1)[..., None], full_targets, 0))

    again, _ = sample([5, 9])
    np.testing.assert_array_equal(again, labels)
    other, _ = sample([5, 10])
    assert (other != labels).any()


def test_sample_balanced_counts_and_uniformity():
    rows = 4000
    positive = np.zeros((rows, 60), bool)
    negative = np.zeros((rows, 60), bool)
    positive[:, :10] = True
    negative[:, 20:50] = True
    selected = targets.sample_balanced(positive, negative, SEED, 8, 0.25).numpy()
    np.testing.assert_array_equal(selected[:, :10].sum(1), 2)
    np.testing.assert_array_equal(selected[:, 20:50].sum(1), 6)
    assert not selected[:, 10:20].any() and not selected[:, 50:].any()
    # Every candidate is picked with probability 0.2; 5.5 standard deviations of slack.
    frequency = selected.mean(axis=0)
    np.testing.assert_allclose(frequency[:10], 0.2, atol=0.035)
    np.testing.assert_allclose(frequency[20:50], 0.2, atol=0.035)


def test_sample_balanced_fills_with_negatives_and_floors_the_positive_cap():
    positive = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0] * 8], bool)
    negative = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [1] * 8], bool)  # [0, 0] in both → positive
    selected = targets.sample_balanced(positive, negative, SEED, tf.constant(5), 0.5).numpy()
    assert selected[0, 0]
    np.testing.assert_array_equal(selected.sum(1), [5, 5])

    positive = np.ones((1, 12), bool)
    selected = targets.sample_balanced(positive, ~positive, SEED, 10, 0.35).numpy()
    assert selected.sum() == 3  # floor(3.5)


def _random_roi_case(rng, batch=3, num_rois=30, max_gt=4):
    gt_boxes = np.zeros((batch, max_gt, 4), np.float32)
    gt_labels = np.full((batch, max_gt), -1, np.int32)
    rois = np.zeros((batch, num_rois, 4), np.float32)
    for b in range(batch):
        num = 0 if b == 0 else rng.integers(1, max_gt + 1)
        for n in range(max_gt):
            y, x = rng.uniform(0, 150, size=2)
            h, w = rng.uniform(10, 80, size=2)
            gt_boxes[b, n] = [y, x, y + h, x + w]
            if n < num:
                gt_labels[b, n] = rng.integers(0, 5)
        for r in range(num_rois):
            if r % 2 and num:
                rois[b, r] = _near_copies(gt_boxes[b, rng.integers(0, num)], 1, rng, 8.0)[0]
            else:
                y, x = rng.uniform(0, 150, size=2)
                rois[b, r] = [y, x] + list(np.array([y, x]) + rng.uniform(5, 90, size=2))
    roi_valid = rng.uniform(size=(batch, num_rois)) < 0.8
    return rois, roi_valid, gt_boxes, gt_labels


def test_roi_targets_match_reference():
    rng = np.random.default_rng(3)
    rois, roi_valid, gt_boxes, gt_labels = _random_roi_case(rng)
    out = targets.assign_roi_targets(rois, roi_valid, gt_boxes, gt_labels)
    for b in range(len(rois)):
        want = ref.roi_targets(rois[b], roi_valid[b], gt_boxes[b], gt_labels[b], 0.5, STD)
        np.testing.assert_array_equal(out["rois"].numpy()[b], want["rois"])
        np.testing.assert_array_equal(out["valid"].numpy()[b], want["valid"])
        np.testing.assert_array_equal(out["labels"].numpy()[b], want["labels"])
        np.testing.assert_allclose(out["box_targets"].numpy()[b], want["box_targets"], atol=1e-4)
    labels = out["labels"].numpy()
    assert (labels > 0).any() and (labels == 0).any() and (labels == -1).any()


def test_roi_targets_hand_built():
    rois = np.array(
        [
            [[10, 10, 50, 54], [60, 60, 80, 80.5], [0, 0, 5, 5], [10, 10, 50, 50]],
            [[10, 10, 50, 54], [60, 60, 80, 80.5], [0, 0, 5, 5], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    roi_valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    gt_boxes = np.array([[GT_A, GT_B, [0, 0, 5, 5]]] * 2, np.float32)
    gt_labels = np.array([[3, 0, -1], [-1, -1, -1]], np.int32)
    out = targets.assign_roi_targets(rois, roi_valid, gt_boxes, gt_labels)

    np.testing.assert_array_equal(out["rois"].numpy()[:, 4:], gt_boxes)
    np.testing.assert_array_equal(out["valid"].numpy(), [[1, 1, 1, 0, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0]])
    # Roi 2 equals a padded gt row: background. Roi 3 equals gt A but is invalid.
    np.testing.assert_array_equal(
        out["labels"].numpy(), [[4, 1, 0, -1, 4, 1, -1], [0, 0, -1, -1, -1, -1, -1]]
    )
    expected = np.zeros((2, 7, 4), np.float32)
    expected[0, 0] = [0.0, -2.0 / 44.0 / 0.1, 0.0, np.log(40.0 / 44.0) / 0.2]
    expected[0, 1] = [0.0, -0.25 / 20.5 / 0.1, 0.0, np.log(20.0 / 20.5) / 0.2]
    np.testing.assert_allclose(out["box_targets"].numpy(), expected, atol=1e-5)


def test_ohem_selects_the_highest_loss_valid_rois():
    rng = np.random.default_rng(4)
    losses = rng.uniform(0, 5, size=(3, 50)).astype(np.float32)
    valid = rng.uniform(size=(3, 50)) < 0.7
    valid[2, 10:] = False  # fewer valid RoIs than num: all of them
    weights = targets.ohem_select(losses, valid, 12).numpy()
    for b in range(3):
        np.testing.assert_array_equal(weights[b], ref.ohem(losses[b], valid[b], 12))
    np.testing.assert_array_equal(weights.sum(1), [12, 12, valid[2].sum()])
    assert weights.dtype == np.float32


def test_ohem_ties_and_invalid_rows():
    losses = np.array([[1.0, 2.0, 2.0, 2.0, 9.0, 0.5]], np.float32)
    valid = np.array([[1, 1, 1, 1, 0, 1]], bool)
    weights = targets.ohem_select(losses, valid, 2).numpy()
    np.testing.assert_array_equal(weights, [[0, 1, 1, 0, 0, 0]])


def test_random_roi_select_respects_fraction_and_validity():
    labels = np.concatenate([np.arange(1, 51) % 3 + 1, np.zeros(100), -np.ones(20)]).astype(np.int32)
    labels = np.stack([labels, labels])
    valid = labels >= 0
    valid[1, :40] = False  # only 10 foreground left in image 1
    weights = targets.random_roi_select(labels, valid, SEED, 64).numpy()
    np.testing.assert_array_equal(((weights > 0) & (labels > 0)).sum(1), [16, 10])
    np.testing.assert_array_equal(((weights > 0) & (labels == 0)).sum(1), [48, 54])
    assert not weights[~valid].any()
    assert set(np.unique(weights)) == {0.0, 1.0}


def test_targets_run_in_tf_function_without_retracing():
    spec = tf.TensorSpec
    anchor_fn = tf.function(
        lambda *a: targets.assign_anchor_targets(*a, batch_size=4),
        input_signature=[
            spec([None, 4], tf.float32),
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.int32),
            spec([None, 2], tf.int32),
            spec([2], tf.int32),
        ],
    )
    roi_fn = tf.function(
        lambda rois, valid, boxes, labels, seed: {
            **targets.assign_roi_targets(rois, valid, boxes, labels),
            "ohem": targets.ohem_select(tf.reduce_sum(rois, -1), valid, 2),
            "random": targets.random_roi_select(
                tf.cast(tf.reduce_sum(rois, -1) > 60, tf.int32), valid, seed, 3
            ),
        },
        input_signature=[
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.bool),
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.int32),
            spec([2], tf.int32),
        ],
    )
    anchor_args = (ANCHORS, HAND_GT_BOXES, HAND_GT_LABELS, HAND_SIZES, SEED)
    for got, want in zip(anchor_fn(*anchor_args), targets.assign_anchor_targets(*anchor_args, batch_size=4)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    labels, _ = anchor_fn(
        ANCHORS[:5], np.zeros([2, 0, 4], np.float32), np.zeros([2, 0], np.int32), HAND_SIZES[:2], SEED
    )
    assert labels.shape == (2, 5)

    rois, roi_valid, gt_boxes, gt_labels = _random_roi_case(np.random.default_rng(5))
    out = roi_fn(rois, roi_valid, gt_boxes, gt_labels, SEED)
    want = targets.assign_roi_targets(rois, roi_valid, gt_boxes, gt_labels)
    for key in want:  # graph-mode rewrites may change the last float bit
        np.testing.assert_allclose(out[key].numpy(), want[key].numpy(), rtol=1e-6, atol=1e-6)
    out = roi_fn(
        rois[:1, :7], roi_valid[:1, :7], np.zeros([1, 0, 4], np.float32), np.zeros([1, 0], np.int32), SEED
    )
    assert out["labels"].shape == (1, 7)
    assert out["ohem"].numpy().sum() == min(2, roi_valid[0, :7].sum())
    assert anchor_fn.experimental_get_tracing_count() == 1
    assert roi_fn.experimental_get_tracing_count() == 1
