"""The pooling area under JAX and PyTorch against TensorFlow (this process) and the numpy
references: ``tests/backend_cases_pooling.all_cases`` runs once per backend in a subprocess
(JAX's gradients jitted)."""

import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.image_scale import resized_size, static_resized_size
from tests import backend_cases_pooling as cases
from tests import reference_psroi as ref
from tests.backend_helpers import on_backend

pytestmark = pytest.mark.slow  # a subprocess per backend

OTHERS = ("jax", "torch")
# Pooled values and their gradients are O(1) sums of a few dozen float32 products: the
# backends differ only in the order of those sums (a few ulps, 1e-6 seen); 1e-5 is the
# tolerance the TensorFlow tests hold against the float64 reference.
TOL = dict(atol=1e-5, rtol=1e-5)
# The Faster R-CNN head adds a 3×3 conv (45 products) and a dense layer on values up to ~10.
HEAD_TOL = dict(atol=1e-4, rtol=1e-5)
# tf.image.resize computes its kernel weights in float32 (~1e-5 off the exact triangle
# kernel); keras.ops.image.resize on JAX/PyTorch computes them its own way: a few taps ×
# 255 × 1e-5 ≈ 0.01 in 0..255 units (0.0054 seen; 1/255 = one 8-bit grey level is 0.0039·255).
RESIZE_ATOL = 0.02


@pytest.fixture(scope="module")
def reference():
    return cases.all_cases()


@pytest.fixture(scope="module", params=OTHERS)
def other(request, tmp_path_factory):
    return request.param, on_backend(
        request.param, "tests.backend_cases_pooling:all_cases", tmp_path_factory.mktemp(request.param)
    )


def test_psroi_pool_forward_and_score_map_gradient(other, reference):
    backend, out = other
    for i, (mode, k, n, _, _, _, _, scale) in enumerate(cases.PSROI_CASES):
        maps, rois, weights = cases.psroi_inputs(i)
        expected = ref.psroi_pool(maps, rois, k, scale, n, mode)
        expected_grad = ref.psroi_pool_adjoint(maps.shape, rois, weights, k, scale, n, mode)
        for name, value in ((backend, out), ("tensorflow", reference)):
            np.testing.assert_allclose(value[f"psroi{i}"], expected, **TOL, err_msg=f"{name} case {i}")
            np.testing.assert_allclose(
                value[f"psroi{i}_grad"], expected_grad, **TOL, err_msg=f"{name} case {i}"
            )
        assert np.abs(expected_grad).sum() > 0


def test_roi_align_vote_and_heads_match_tensorflow(other, reference):
    backend, out = other
    for name in ("roi_align", "roi_align_grad", "vote", "rfcn_class", "rfcn_class_grad", "rfcn_box"):
        assert out[name].shape == reference[name].shape, name
        np.testing.assert_allclose(out[name], reference[name], **TOL, err_msg=f"{backend} {name}")
    for name in ("faster_class", "faster_box", "faster_conv4_grad"):
        np.testing.assert_allclose(out[name], reference[name], **HEAD_TOL, err_msg=f"{backend} {name}")
    assert np.abs(reference["faster_conv4_grad"]).sum() > 0 and np.abs(reference["roi_align_grad"]).sum() > 0


def test_image_resizer_and_preprocess_match_tensorflow(other, reference):
    backend, out = other
    for i, (_, _, _, batch, height, width) in enumerate(cases.RESIZE_CASES):
        sizes = reference[f"resize{i}_sizes"]
        np.testing.assert_array_equal(out[f"resize{i}_sizes"], sizes)
        np.testing.assert_array_equal(out[f"resize{i}_scales"], reference[f"resize{i}_scales"])
        images = out[f"resize{i}_images"]
        assert images.shape == (batch, *sizes[0], 3), (backend, i)
        if tuple(sizes[0]) == (height, width):  # at scale: untouched
            np.testing.assert_array_equal(images, cases.resize_inputs(i))
        np.testing.assert_allclose(
            images, reference[f"resize{i}_images"], atol=RESIZE_ATOL, err_msg=f"{backend} {i}"
        )
    for name in ("padded_images", "padded_sizes", "padded_scales"):
        np.testing.assert_array_equal(out[name], reference[name])
    # preprocess_input: the same float32 subtraction of the ImageNet means (values ≤ 255).
    np.testing.assert_allclose(out["preprocess"], reference["preprocess"], atol=1e-4)
    # Per image: float32 sums of 600 values in 0..255 in another order (~1e-4), × 50 / σ.
    np.testing.assert_allclose(out["preprocess_per_image"], reference["preprocess_per_image"], atol=5e-4)
    np.testing.assert_allclose(out["functional"], reference["functional"], atol=RESIZE_ATOL)
    assert out["functional"].shape == (1, 24, 40, 3)
    assert out["small_backbone"].shape == reference["small_backbone"].shape
    assert np.all(np.isfinite(out["small_backbone"]))


def test_padded_batch_not_at_scale_is_refused_off_tensorflow(other, reference):
    backend, out = other
    assert reference["not_at_scale_error"] == ""  # TensorFlow resizes each image instead
    message = str(out["not_at_scale_error"])
    assert f"under the {backend} backend a zero-padded batch" in message
    assert "image 0 is [30, 50], the scale rule makes it [24, 40]" in message


def test_static_resized_size_equals_resized_size():
    rng = np.random.default_rng(5)
    sizes = np.concatenate([rng.integers(1, 4000, (3000, 2)), [[600, 1000], [1, 1], [599, 1001], [333, 500]]])
    for min_side, max_side in ((600, 1000), (192, 320), (24, 40), (800, 1333)):
        expected = resized_size(tf.constant(sizes), min_side, max_side).numpy()
        np.testing.assert_array_equal(static_resized_size(sizes, min_side, max_side), expected)
