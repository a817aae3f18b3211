"""RPN and head losses against numpy, and their behaviour in degenerate batches."""

import numpy as np
import tensorflow as tf

from rfcn_tf import losses, targets
from tests import reference_targets as ref

SEED = tf.constant([1, 2], tf.int32)


def test_smooth_l1_matches_definition():
    x = np.array([-3.0, -1.0, -0.5, -0.05, 0.0, 0.1, 1 / 9, 0.999, 1.0, 2.5], np.float32)
    for beta in (1.0, 1 / 9):
        want = [ref.smooth_l1(float(v), beta) for v in x]
        np.testing.assert_allclose(losses.smooth_l1(x, beta).numpy(), want, rtol=1e-5, atol=1e-7)
    assert losses.smooth_l1(np.zeros((2, 3, 4), np.float32)).shape == (2, 3, 4)


def _random_rpn_batch(rng, batch=2, anchors=40):
    labels = rng.choice([-1, 0, 1], size=(batch, anchors), p=[0.5, 0.3, 0.2]).astype(np.int32)
    logits = rng.normal(0, 3, size=(batch, anchors)).astype(np.float32)
    deltas = rng.normal(0, 1.5, size=(batch, anchors, 4)).astype(np.float32)
    box_targets = np.where((labels == 1)[..., None], rng.normal(0, 1, size=(batch, anchors, 4)), 0)
    return logits, deltas, labels, box_targets.astype(np.float32)


def _random_head_batch(rng, batch=2, rois=30, classes=4):
    labels = rng.integers(-1, classes + 1, size=(batch, rois)).astype(np.int32)
    logits = rng.normal(0, 3, size=(batch, rois, classes + 1)).astype(np.float32)
    deltas = rng.normal(0, 1.5, size=(batch, rois, 4)).astype(np.float32)
    box_targets = np.where((labels > 0)[..., None], rng.normal(0, 1, size=(batch, rois, 4)), 0)
    return logits, deltas, labels, box_targets.astype(np.float32)


def test_rpn_losses_match_reference():
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = _random_rpn_batch(rng)
        got = [float(v) for v in losses.rpn_losses(*batch)]
        np.testing.assert_allclose(got, ref.rpn_losses(*batch), rtol=1e-5)


def test_head_losses_match_reference():
    rng = np.random.default_rng(1)
    for _ in range(3):
        batch = _random_head_batch(rng)
        cls, box = losses.per_roi_losses(*batch)
        want_cls, want_box = ref.per_roi_losses(*batch)
        np.testing.assert_allclose(cls.numpy(), want_cls, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(box.numpy(), want_box, rtol=1e-5, atol=1e-6)
        assert not cls.numpy()[batch[2] < 0].any() and not box.numpy()[batch[2] <= 0].any()

        weights = (rng.uniform(size=batch[2].shape) < 0.5).astype(np.float32)
        got = [float(v) for v in losses.head_losses(*batch, weights)]
        np.testing.assert_allclose(got, ref.head_losses(*batch, weights), rtol=1e-5)


def _losses_and_gradients(fn, *args):
    """Runs ``fn`` on the float inputs as variables → (loss values, their gradients)."""
    variables = [tf.Variable(a) if np.asarray(a).dtype == np.float32 else a for a in args]
    with tf.GradientTape() as tape:
        values = fn(*variables)
        total = tf.add_n(list(values))
    trainable = [v for v in variables if isinstance(v, tf.Variable)]
    return [v.numpy() for v in values], tape.gradient(total, trainable)


def _assert_finite(values, gradients):
    for v in values:
        assert np.isfinite(v).all()
    for g in gradients:
        assert g is not None and np.isfinite(g.numpy()).all()


def test_nothing_sampled_gives_zero_losses_and_finite_gradients():
    rng = np.random.default_rng(2)
    logits, deltas, labels, box_targets = _random_rpn_batch(rng)
    values, grads = _losses_and_gradients(
        losses.rpn_losses, logits, deltas, np.full_like(labels, -1), box_targets
    )
    assert values == [0.0, 0.0]
    _assert_finite(values, grads)

    logits, deltas, labels, box_targets = _random_head_batch(rng)
    values, grads = _losses_and_gradients(
        losses.head_losses, logits, deltas, labels, box_targets, np.zeros(labels.shape, np.float32)
    )
    assert values == [0.0, 0.0]
    _assert_finite(values, grads)


def _pipeline_losses(gt_boxes, gt_labels, rng):
    """Targets for a 64×64 image, then every loss on random predictions (with gradients)."""
    anchors = np.array(
        [
            [y, x, y + s, x + s]
            for s in (8, 16, 32)
            for y in range(0, 64 - s + 1, 8)
            for x in range(0, 64 - s + 1, 8)
        ],
        np.float32,
    )
    batch = len(gt_boxes)
    sizes = np.full((batch, 2), 64, np.int32)
    rpn_labels, rpn_targets = targets.assign_anchor_targets(
        anchors, gt_boxes, gt_labels, sizes, SEED, batch_size=32
    )
    rois = rng.uniform(0, 32, size=(batch, 10, 2))
    rois = np.concatenate([rois, rois + rng.uniform(1, 32, size=(batch, 10, 2))], -1).astype(np.float32)
    head = targets.assign_roi_targets(rois, np.ones((batch, 10), bool), gt_boxes, gt_labels)
    num_rows = head["labels"].shape[1]

    rpn = _losses_and_gradients(
        losses.rpn_losses,
        rng.normal(size=(batch, len(anchors))).astype(np.float32),
        rng.normal(size=(batch, len(anchors), 4)).astype(np.float32),
        rpn_labels,
        rpn_targets,
    )
    class_logits = rng.normal(size=(batch, num_rows, 4)).astype(np.float32)
    box_deltas = rng.normal(size=(batch, num_rows, 4)).astype(np.float32)
    cls, _ = losses.per_roi_losses(class_logits, box_deltas, head["labels"], head["box_targets"])
    weights = targets.ohem_select(cls, head["valid"], 4)
    head_values = _losses_and_gradients(
        losses.head_losses, class_logits, box_deltas, head["labels"], head["box_targets"], weights
    )
    return rpn, head_values, head


def test_no_gt_gives_finite_losses_and_gradients():
    rng = np.random.default_rng(3)
    rpn, head_values, head = _pipeline_losses(
        np.zeros([2, 0, 4], np.float32), np.zeros([2, 0], np.int32), rng
    )
    _assert_finite(*rpn)
    _assert_finite(*head_values)
    assert rpn[0][1] == 0.0 and head_values[0][1] == 0.0  # no positives: no box loss
    assert rpn[0][0] > 0.0 and head_values[0][0] > 0.0
    assert not (head["labels"].numpy() > 0).any()


def test_tiny_gt_gives_finite_losses_and_gradients():
    rng = np.random.default_rng(4)
    gt_boxes = np.array(
        [[[10, 10, 11, 11], [40, 40, 40, 40]], [[0, 0, 1, 1], [5, 5, 5.5, 6]]], np.float32
    )  # 1×1 px, an empty box and a half-pixel one
    gt_labels = np.array([[0, 1], [2, -1]], np.int32)
    rpn, head_values, head = _pipeline_losses(gt_boxes, gt_labels, rng)
    _assert_finite(*rpn)
    _assert_finite(*head_values)
    assert np.isfinite(head["box_targets"].numpy()).all()
    assert (head["labels"].numpy() > 0).any()  # the appended gt rows are foreground


def test_losses_run_in_tf_function_without_retracing():
    spec = tf.TensorSpec
    rpn_fn = tf.function(
        losses.rpn_losses,
        input_signature=[
            spec([None, None], tf.float32),
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.int32),
            spec([None, None, 4], tf.float32),
        ],
    )
    head_fn = tf.function(
        losses.head_losses,
        input_signature=[
            spec([None, None, None], tf.float32),
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.int32),
            spec([None, None, 4], tf.float32),
            spec([None, None], tf.float32),
        ],
    )
    rng = np.random.default_rng(5)
    for anchors, rois in ((40, 30), (7, 0)):
        batch = _random_rpn_batch(rng, batch=3, anchors=anchors)
        np.testing.assert_allclose([float(v) for v in rpn_fn(*batch)], ref.rpn_losses(*batch), rtol=1e-5)
        batch = _random_head_batch(rng, batch=1, rois=rois)
        weights = np.ones(batch[2].shape, np.float32)
        np.testing.assert_allclose(
            [float(v) for v in head_fn(*batch, weights)], ref.head_losses(*batch, weights), rtol=1e-5
        )
    assert rpn_fn.experimental_get_tracing_count() == 1
    assert head_fn.experimental_get_tracing_count() == 1
