"""Targets, samplers, losses, boxes and anchors under TensorFlow, JAX (jitted) and PyTorch:
each against the plain-numpy references, and the backends against each other — sampled
masks and integer outputs bit for bit, floats to float32 rounding.

One subprocess per backend for the whole module (``tests.backend_cases_targets:run_all``).
"""

import math

import numpy as np
import pytest

from rfcn_tf.config import RFCNConfig
from tests import backend_cases_targets as cases
from tests import reference_targets as ref
from tests.backend_helpers import on_backend

pytestmark = pytest.mark.slow  # a subprocess per backend

SEED = np.array([1234567, -89], np.int32)
SEED64 = np.array([2**40 + 17, 5], np.int64)  # the model's int64 seed: taken modulo 2³²
STD = RFCNConfig.box_std
U = 2.0**-24  # float32 unit roundoff


def _near(box, count, rng, jitter):
    return np.asarray(box) + rng.uniform(-jitter, jitter, size=(count, 4))


def _inputs():
    rng = np.random.default_rng(23)
    batch, max_gt, image = 3, 4, 96
    centres = np.arange(0, image, 8, dtype=np.float32) + 4.0
    anchors = [
        [cy - s / 2, cx - s / 2, cy + s / 2, cx + s / 2]
        for s in (16.0, 40.0)
        for cy in centres
        for cx in centres
    ]
    gt_boxes = np.zeros((batch, max_gt, 4), np.float32)
    gt_labels = np.full((batch, max_gt), -1, np.int32)
    sizes = rng.integers(70, image + 1, size=(batch, 2)).astype(np.int32)
    rois = rng.uniform(0, 60, size=(batch, 24, 2))
    rois = np.concatenate([rois, rois + rng.uniform(4, 40, size=(batch, 24, 2))], -1)
    for b in range(batch):
        num = (0, 2, 4)[b]  # image 0 has no gt; padded rows still hold boxes
        for n in range(max_gt):
            h, w = rng.uniform(8, 50, size=2)
            y, x = rng.uniform(0, sizes[b, 0] - h), rng.uniform(0, sizes[b, 1] - w)
            gt_boxes[b, n] = [y, x, y + h, x + w]
            if n < num:
                gt_labels[b, n] = rng.integers(0, 4)
                anchors.extend(_near(gt_boxes[b, n], 2, rng, 2.0))
                rois[b, 2 * n : 2 * n + 2] = _near(gt_boxes[b, n], 2, rng, 3.0)
    num_rows = rois.shape[1] + max_gt

    rpn_labels = rng.choice([-1, 0, 1], size=(2, 90), p=[0.5, 0.3, 0.2]).astype(np.int32)
    head_labels = rng.integers(-1, 5, size=(2, 40)).astype(np.int32)
    arrays = {
        "seed": SEED,
        "seed64": SEED64,
        "anchors": np.array(anchors, np.float32),
        "gt_boxes": gt_boxes,
        "gt_labels": gt_labels,
        "image_sizes": sizes,
        "positive": rng.uniform(size=(4, 50)) < 0.15,
        "negative": rng.uniform(size=(4, 50)) < 0.5,
        "rois": rois.astype(np.float32),
        "wide_rois": (rois * 1.5 - 20.0).astype(np.float32),  # partly outside the images
        "roi_valid": rng.uniform(size=(batch, rois.shape[1])) < 0.85,
        "roi_loss": np.round(rng.uniform(0, 3, size=(batch, num_rows)), 1).astype(np.float32),  # ties
        "roi_deltas": rng.normal(0, 1, size=(batch, rois.shape[1], 4)).astype(np.float32),
        "rpn_logits": rng.normal(0, 3, size=(2, 90)).astype(np.float32),
        "rpn_deltas": rng.normal(0, 1.5, size=(2, 90, 4)).astype(np.float32),
        "rpn_labels": rpn_labels,
        "rpn_targets": np.where((rpn_labels == 1)[..., None], rng.normal(size=(2, 90, 4)), 0).astype(
            np.float32
        ),
        "class_logits": rng.normal(0, 3, size=(2, 40, 5)).astype(np.float32),
        "box_deltas": rng.normal(0, 1.5, size=(2, 40, 4)).astype(np.float32),
        "head_labels": head_labels,
        "head_targets": np.where((head_labels > 0)[..., None], rng.normal(size=(2, 40, 4)), 0).astype(
            np.float32
        ),
        "head_weights": (rng.uniform(size=(2, 40)) < 0.5).astype(np.float32),
        "diff": np.linspace(-0.3, 0.3, 25, dtype=np.float32),
    }
    return arrays


INPUTS = _inputs()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("targets_backends")
    out = {"tensorflow": cases.run_all(**INPUTS)}
    for backend in ("jax", "torch"):
        out[backend] = on_backend(backend, "tests.backend_cases_targets:run_all", tmp, **INPUTS)
    return out


BACKENDS = ("tensorflow", "jax", "torch")


def _sampled(full_labels, bits, num, fraction):
    """Reference sampling of a full labelling with the reference bits → labels."""
    labels = np.full_like(full_labels, -1)
    for b in range(len(full_labels)):
        mask = ref.sample_balanced(full_labels[b] == 1, full_labels[b] == 0, bits[b], num, fraction)
        labels[b] = np.where(mask, (full_labels[b] == 1).astype(int), -1)
    return labels


def _full_reference(allowed_border):
    a = INPUTS
    out = [
        ref.anchor_labels(
            a["anchors"],
            a["gt_boxes"][b],
            a["gt_labels"][b],
            a["image_sizes"][b],
            allowed_border=allowed_border,
        )
        for b in range(len(a["gt_boxes"]))
    ]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_bits_match_the_numpy_definition(results, backend):
    got = results[backend]
    np.testing.assert_array_equal(got["bits"], ref.random_bits(SEED, 4, 9, first_row=3))
    np.testing.assert_array_equal(got["bits_seed64"], ref.random_bits([17, 5], 2, 5))
    top = ref.random_bits(SEED, 3, 6, first_row=1).view(np.uint32) >> 8
    np.testing.assert_array_equal(got["uniform"], top.astype(np.float32) * np.float32(U))


@pytest.mark.parametrize("backend", BACKENDS)
def test_anchor_targets_match_reference(results, backend):
    got = results[backend]
    num_anchors = len(INPUTS["anchors"])
    full, full_targets = _full_reference(0.0)
    assert (full == 1).any() and (full == 0).any() and (full == -1).any()
    np.testing.assert_array_equal(got["anchor_full_labels"], full)
    np.testing.assert_allclose(got["anchor_full_targets"], full_targets, atol=1e-4)  # float32 vs float64

    bits = ref.random_bits(SEED, 3, num_anchors, first_row=1)
    np.testing.assert_array_equal(got["anchor_labels"], _sampled(full, bits, 16, 0.5))
    np.testing.assert_allclose(
        got["anchor_targets"], np.where((got["anchor_labels"] == 1)[..., None], full_targets, 0), atol=1e-4
    )
    centre, _ = _full_reference(None)
    bits = ref.random_bits(SEED, 3, num_anchors)
    np.testing.assert_array_equal(got["anchor_centre_labels"], _sampled(centre, bits, 12, 0.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_samplers_and_ohem_match_reference(results, backend):
    got, a = results[backend], INPUTS
    bits = ref.random_bits(SEED, 4, 50, first_row=2)
    want = [ref.sample_balanced(a["positive"][b], a["negative"][b], bits[b], 7, 0.4) for b in range(4)]
    np.testing.assert_array_equal(got["sampled"], want)

    labels, valid = got["roi_labels"], got["roi_valid"]
    bits = ref.random_bits(SEED + 1, 3, labels.shape[1], first_row=2)
    want = [
        ref.sample_balanced(valid[b] & (labels[b] > 0), valid[b] & (labels[b] == 0), bits[b], 6, 0.5)
        for b in range(3)
    ]
    np.testing.assert_array_equal(got["random_rois"], np.array(want, np.float32))
    want = [ref.ohem(a["roi_loss"][b], valid[b], 5) for b in range(3)]
    np.testing.assert_array_equal(got["ohem"], want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_roi_targets_match_reference(results, backend):
    got, a = results[backend], INPUTS
    for b in range(3):
        want = ref.roi_targets(a["rois"][b], a["roi_valid"][b], a["gt_boxes"][b], a["gt_labels"][b], 0.5, STD)
        for key in ("rois", "valid", "labels"):
            np.testing.assert_array_equal(got[f"roi_{key}"][b], want[key])
        np.testing.assert_allclose(got["roi_box_targets"][b], want["box_targets"], atol=1e-4)
    assert (
        (got["roi_labels"] > 0).any() and (got["roi_labels"] == 0).any() and (got["roi_labels"] == -1).any()
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_losses_match_reference(results, backend):
    got, a = results[backend], INPUTS
    rpn = (a["rpn_logits"], a["rpn_deltas"], a["rpn_labels"], a["rpn_targets"])
    np.testing.assert_allclose([got["rpn_cls"], got["rpn_box"]], ref.rpn_losses(*rpn), rtol=1e-5)
    head = (a["class_logits"], a["box_deltas"], a["head_labels"], a["head_targets"])
    want_cls, want_box = ref.per_roi_losses(*head)
    np.testing.assert_allclose(got["per_roi_cls"], want_cls, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["per_roi_box"], want_box, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        [got["head_cls"], got["head_box"]], ref.head_losses(*head, a["head_weights"]), rtol=1e-5
    )
    np.testing.assert_allclose(
        got["smooth_l1"], [ref.smooth_l1(float(x), 1 / 9) for x in a["diff"]], rtol=1e-5, atol=1e-7
    )
    # Nothing sampled: zero losses whose gradients are exactly zero (no 0·inf NaN under JAX).
    for key in (
        "rpn_nothing_grad_logits",
        "rpn_nothing_grad_deltas",
        "head_nothing_grad_logits",
        "head_nothing_grad_deltas",
    ):
        assert got[key].shape in (
            a["rpn_logits"].shape,
            a["rpn_deltas"].shape,
            a["class_logits"].shape,
            a["box_deltas"].shape,
        )
        np.testing.assert_array_equal(got[key], 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_and_anchors_match_reference(results, backend):
    got, a = results[backend], INPUTS
    rois, gt = a["rois"].astype(np.float64), a["gt_boxes"].astype(np.float64)
    encoded = [[ref.encode(r, t, STD) for r, t in zip(rois[b], rois[b][::-1])] for b in range(3)]
    np.testing.assert_allclose(got["encoded"], encoded, rtol=1e-5, atol=1e-5)
    deltas = a["roi_deltas"].astype(np.float64)
    decoded = [[ref.decode(r, d, STD) for r, d in zip(rois[b], deltas[b])] for b in range(3)]
    np.testing.assert_allclose(got["decoded"], decoded, rtol=1e-5, atol=1e-4)
    ious = [[[ref.iou(r, g) for g in gt[b]] for r in rois[b]] for b in range(3)]
    np.testing.assert_allclose(got["iou"], ious, atol=1e-6)  # keras adds ε = 1e-7 to the union
    limits = np.concatenate([a["image_sizes"], a["image_sizes"]], -1)[:, None, :]
    np.testing.assert_array_equal(got["clipped"], np.clip(a["wide_rois"], 0, limits))
    grid = ref.anchor_grid(3, 5, 16, cases.SCALES, cases.RATIOS)
    np.testing.assert_allclose(got["grid"], grid, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(got["layer_grid"], got["grid"])
    np.testing.assert_array_equal(got["flat_logits"], a["rpn_logits"])
    np.testing.assert_array_equal(got["flat_deltas"], a["rpn_deltas"])


def _float_tolerance(key):
    """Tolerance between backends for one float output, relative to the output's largest
    magnitude (the errors are absolute at that scale: cancellation in ``cy − h/2`` or in a
    log-sum-exp turns an ulp of the large intermediate into many ulps of a small result).
    The float32 operations are the same; transcendental functions (exp, log, log1p) differ
    by ≤ 2 ulp a call and XLA may fuse a multiply-add → 16 unit roundoffs. Summed losses add
    a reduction in another order: a tree sum of n terms errs by ≤ ⌈log2 n⌉ of them."""
    if key in ("rpn_cls", "rpn_box", "head_cls", "head_box"):
        n = INPUTS["rpn_labels"].size if key.startswith("rpn") else INPUTS["head_labels"].size
        return (4 + math.ceil(math.log2(n))) * U
    return 8 * 2 * U


@pytest.mark.parametrize("backend", ("jax", "torch"))
def test_backends_agree_with_tensorflow(results, backend):
    want, got = results["tensorflow"], results[backend]
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        if want[key].dtype.kind in "biu" or key in ("random_rois", "ohem", "uniform", "clipped"):
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            rtol = _float_tolerance(key)
            scale = max(1.0, float(np.abs(want[key]).max(initial=0.0)))
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=rtol * scale, err_msg=key)
