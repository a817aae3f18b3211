"""PSRoIPool against the numpy references in tests/reference_psroi.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.layers.psroi_pool import PSRoIPool
from rfcn_tf.layers.sampling import IMPLEMENTATIONS
from tests import reference_psroi as ref

ATOL = 1e-5
RTOL = 1e-5


# (k, n, D, H, W, B, spatial_scale)
CASES = [
    (1, 1, 3, 5, 6, 2, 1 / 16),
    (3, 2, 2, 6, 7, 2, 1 / 16),
    (7, 2, 1, 5, 9, 1, 1 / 16),
    (3, 3, 2, 4, 4, 2, 0.5),
    (7, 1, 2, 8, 6, 1, 1 / 8),
    (3, 2, 2, 1, 6, 2, 1 / 16),  # H = 1
    (3, 2, 2, 6, 1, 1, 1 / 16),  # W = 1
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["align", "crop"])
@pytest.mark.parametrize("k,n,depth,height,width,batch,scale", CASES)
def test_matches_reference(mode, k, n, depth, height, width, batch, scale, implementation):
    rng = np.random.default_rng([k, n, depth, height, width, mode == "align"])
    maps = rng.normal(size=(batch, height, width, k * k * depth)).astype(np.float32)
    rois = ref.roi_kinds(rng, height, width, scale, batch)
    out = PSRoIPool(k=k, spatial_scale=scale, samples_per_bin=n, mode=mode, implementation=implementation)(
        maps, rois
    )
    assert out.shape == (batch, rois.shape[1], k, k, depth)
    expected = ref.psroi_pool(maps, rois, k, scale, n, mode)
    np.testing.assert_allclose(out.numpy(), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("k,n", [(3, 2), (7, 1)])
def test_align_equals_torchvision_class_major_definition(k, n):
    """torchvision-layout maps, permuted as the docstring says, give torchvision's result."""
    rng = np.random.default_rng(7)
    depth, height, width, scale = 3, 6, 8, 1 / 16
    class_major = rng.normal(size=(2, height, width, k * k * depth)).astype(np.float32)
    rois = ref.roi_kinds(rng, height, width, scale, 2)
    out = PSRoIPool(k=k, spatial_scale=scale, samples_per_bin=n)(
        ref.class_major_to_bin_major(class_major, k), rois
    )
    expected = ref.psroi_pool(class_major, rois, k, scale, n, "align", layout="class_major")
    np.testing.assert_allclose(out.numpy(), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("mode", ["align", "crop"])
def test_class_major_maps_permuted_as_documented_pool_to_their_own_channels(mode):
    """Class-major channel c = (d·k + i)·k + j holds the constant c; after the docstring's
    permutation (reshape to [D, k, k], transpose to [k, k, D]) PSRoIPool's bin (i, j),
    output d reads exactly channel (d·k + i)·k + j."""
    k, depth = 3, 4
    class_major = np.broadcast_to(np.arange(k * k * depth, dtype=np.float32), (1, 12, 12, k * k * depth))
    bin_major = (
        class_major.reshape(1, 12, 12, depth, k, k)
        .transpose(0, 1, 2, 4, 5, 3)
        .reshape(1, 12, 12, k * k * depth)
    )
    rois = np.array([[[40.0, 50.0, 140.0, 150.0]]], np.float32)
    out = PSRoIPool(k=k, spatial_scale=1 / 16, mode=mode)(bin_major, rois).numpy()[0, 0]
    expected = np.array(
        [[[(d * k + i) * k + j for d in range(depth)] for j in range(k)] for i in range(k)], np.float32
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(ref.class_major_to_bin_major(class_major, k), bin_major)


@pytest.mark.parametrize("mode", ["align", "crop"])
def test_channel_layout_is_bin_major(mode):
    k, depth = 3, 2
    values = np.zeros((k, k, depth), np.float32)
    for i in range(k):
        for j in range(k):
            for d in range(depth):
                values[i, j, d] = 10 * i + j + 0.5 * d
    # channel (i·k + j)·D + d holds values[i, j, d] everywhere on the map
    maps = np.broadcast_to(values.reshape(-1), (1, 12, 12, k * k * depth))
    rois = np.array([[[40.0, 50.0, 140.0, 150.0]]], np.float32)  # well inside 192×192
    out = PSRoIPool(k=k, spatial_scale=1 / 16, mode=mode)(maps, rois)
    np.testing.assert_allclose(out.numpy()[0, 0], values, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_align_half_pixel_offset_on_ramp(n):
    """On maps equal to the row (column) index, a bin is its sample centre:
    y1·scale − 0.5 + (i + 0.5)·bin."""
    k, height, width, scale = 3, 20, 24, 0.5
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width))
    ramp = np.stack([rows, cols], -1)  # D = 2: channel 0 rows, channel 1 columns
    maps = np.tile(ramp, (1, 1, k * k))[None]
    y1, x1, y2, x2 = 5.0, 7.0, 29.0, 40.0
    out = PSRoIPool(k=k, spatial_scale=scale, samples_per_bin=n)(
        maps, np.array([[[y1, x1, y2, x2]]], np.float32)
    ).numpy()[0, 0]
    bins = np.arange(k) + 0.5
    centre_y = y1 * scale - 0.5 + bins * (y2 - y1) * scale / k
    centre_x = x1 * scale - 0.5 + bins * (x2 - x1) * scale / k
    np.testing.assert_allclose(out[..., 0], np.broadcast_to(centre_y[:, None], (k, k)), atol=1e-5)
    np.testing.assert_allclose(out[..., 1], np.broadcast_to(centre_x[None, :], (k, k)), atol=1e-5)


def test_crop_mode_on_ramp():
    """crop mode: normalised bin centre times (H − 1)."""
    k, height, width, scale = 3, 20, 24, 0.5
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    maps = np.tile(rows[..., None], (1, 1, k * k))[None]
    y1, y2 = 5.0, 29.0
    out = PSRoIPool(k=k, spatial_scale=scale, mode="crop")(
        maps, np.array([[[y1, 2.0, y2, 30.0]]], np.float32)
    ).numpy()[0, 0, :, 0, 0]
    lo, hi = y1 * scale / height, y2 * scale / height
    expected = (lo + (np.arange(k) + 0.5) * (hi - lo) / k) * (height - 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "y1,y2,n,expected",
    [
        (-5.5, 4.5, 4, 0.5),  # samples -4.75, -2.25 (< -1 → 0), 0.25, 2.75
        (-0.5, 1.5, 2, 1.0),  # samples -0.5 (read as row 0), 0.5
        (7.5, 9.5, 2, 0.5),  # samples 7.5 (read as row 7), 8.5 (> H → 0)
        (12.0, 20.0, 2, 0.0),  # entirely below the map
    ],
)
def test_align_border_rule(y1, y2, n, expected):
    """H = 8, spatial_scale 1, one bin (k = 1) of n×n samples on a map of ones;
    start = y1 − 0.5, so the y samples lie at start + (s + 0.5)·(y2 − y1)/n."""
    maps = np.ones((1, 8, 8, 1), np.float32)
    rois = np.array([[[y1, 2.0, y2, 5.0]]], np.float32)
    out = PSRoIPool(k=1, spatial_scale=1.0, samples_per_bin=n)(maps, rois)
    np.testing.assert_allclose(out.numpy().reshape(()), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["align", "crop"])
def test_zero_area_roi_samples_one_point(mode):
    rng = np.random.default_rng(3)
    k, depth = 3, 2
    maps = np.tile(rng.normal(size=(1, 6, 7, depth)).astype(np.float32), (1, 1, 1, k * k))
    rois = np.array([[[37.0, 53.0, 37.0, 53.0]]], np.float32)
    out = PSRoIPool(k=k, mode=mode)(maps, rois).numpy()[0, 0]
    # every bin reads the same channel values (tiled maps) at the same point
    np.testing.assert_allclose(out, np.broadcast_to(out[0, 0], out.shape), atol=1e-6)
    np.testing.assert_allclose(out, ref.psroi_pool(maps, rois, k, 1 / 16, 2, mode)[0, 0], atol=ATOL)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["align", "crop"])
@pytest.mark.parametrize(
    "k,n,height,width",
    [
        (3, 2, 5, 6),
        (2, 1, 4, 5),
        (2, 3, 4, 5),  # align: interior samples, the padded-map path
        (3, 2, 1, 6),  # align: the one-pixel axis gets a zero row
        (3, 1, 6, 1),
    ],
)
def test_gradient_matches_numpy_adjoint(mode, implementation, k, n, height, width):
    rng = np.random.default_rng([11, k, n, height, width])
    depth, scale = 2, 1 / 16
    maps = tf.constant(rng.normal(size=(2, height, width, k * k * depth)), tf.float32)
    rois = tf.constant(ref.roi_kinds(rng, height, width, scale, 2))
    weights = rng.normal(size=(2, rois.shape[1], k, k, depth)).astype(np.float32)
    layer = PSRoIPool(k=k, spatial_scale=scale, samples_per_bin=n, mode=mode, implementation=implementation)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([maps, rois])
        loss = tf.reduce_sum(layer(maps, rois) * weights)
    expected = ref.psroi_pool_adjoint(maps.shape, rois.numpy(), weights, k, scale, n, mode)
    np.testing.assert_allclose(tape.gradient(loss, maps).numpy(), expected, atol=ATOL, rtol=RTOL)
    assert tape.gradient(loss, rois) is None  # RoIs are constants


def test_reference_adjoint_matches_central_differences():
    rng = np.random.default_rng(5)
    k, n, scale = 2, 2, 0.25
    maps = rng.normal(size=(1, 3, 4, k * k))
    rois = ref.roi_kinds(rng, 3, 4, scale, 1)[:, :6]
    weights = rng.normal(size=(1, 6, k, k, 1))
    for mode in ("align", "crop"):
        adjoint = ref.psroi_pool_adjoint(maps.shape, rois, weights, k, scale, n, mode)
        numeric = np.zeros_like(maps)
        eps = 1e-3
        for idx in np.ndindex(maps.shape):
            plus, minus = maps.copy(), maps.copy()
            plus[idx] += eps
            minus[idx] -= eps
            diff = ref.psroi_pool(plus, rois, k, scale, n, mode) - ref.psroi_pool(
                minus, rois, k, scale, n, mode
            )
            numeric[idx] = np.sum(diff * weights) / (2 * eps)
        np.testing.assert_allclose(adjoint, numeric, atol=1e-8)
        assert np.abs(adjoint).sum() > 0


@pytest.mark.parametrize("mode", ["align", "crop"])
def test_no_rois(mode):
    maps = np.zeros((2, 5, 6, 9 * 4), np.float32)
    out = PSRoIPool(k=3, mode=mode)(maps, np.zeros((2, 0, 4), np.float32))
    assert out.shape == (2, 0, 3, 3, 4)


def test_dynamic_shapes_in_tf_function():
    layer = PSRoIPool(k=3, spatial_scale=1 / 16)
    fn = tf.function(
        layer,
        input_signature=[
            tf.TensorSpec([None, None, None, None], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
        ],
    )
    rng = np.random.default_rng(2)
    for batch, height, width, count in [(1, 5, 7, 3), (3, 9, 4, 11)]:
        maps = rng.normal(size=(batch, height, width, 18)).astype(np.float32)
        rois = ref.roi_kinds(rng, height, width, 1 / 16, batch)[:, :count]
        np.testing.assert_allclose(
            fn(maps, rois).numpy(),
            ref.psroi_pool(maps, rois, 3, 1 / 16, 2, "align"),
            atol=ATOL,
            rtol=RTOL,
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by k\\*k = 9"):
        fn(np.zeros((1, 4, 4, 10), np.float32), np.zeros((1, 1, 4), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch size of `rois`"):
        fn(np.zeros((2, 4, 4, 9), np.float32), np.zeros((1, 1, 4), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`rois` contains NaN"):
        fn(np.zeros((1, 4, 4, 9), np.float32), np.full((1, 1, 4), np.nan, np.float32))


def test_config_round_trip():
    layer = PSRoIPool(
        k=5, spatial_scale=0.125, samples_per_bin=3, mode="crop", implementation="gather", name="ps"
    )
    config = layer.get_config()
    keys = ("k", "spatial_scale", "samples_per_bin", "mode", "implementation")
    assert {key: config[key] for key in keys} == {
        "k": 5,
        "spatial_scale": 0.125,
        "samples_per_bin": 3,
        "mode": "crop",
        "implementation": "gather",
    }
    clone = PSRoIPool.from_config(config)
    assert clone.get_config() == config
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(1, 6, 6, 25 * 2)).astype(np.float32)
    rois = ref.roi_kinds(rng, 6, 6, 0.125, 1)
    np.testing.assert_array_equal(layer(maps, rois).numpy(), clone(maps, rois).numpy())


def test_functional_model_saves_and_reloads(tmp_path):
    k, depth = 3, 4
    maps_in = keras.Input((None, None, k * k * depth), name="score_maps")
    rois_in = keras.Input((None, 4), name="rois")
    pooled = PSRoIPool(k=k, spatial_scale=1 / 16, mode="align")(maps_in, rois_in)
    assert tuple(pooled.shape) == (None, None, k, k, depth)
    model = keras.Model([maps_in, rois_in], pooled)
    path = tmp_path / "psroi.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], PSRoIPool)
    rng = np.random.default_rng(9)
    for height, width in [(5, 8), (7, 3)]:
        maps = rng.normal(size=(2, height, width, k * k * depth)).astype(np.float32)
        rois = ref.roi_kinds(rng, height, width, 1 / 16, 2)
        before = model.predict([maps, rois], verbose=0)
        after = loaded.predict([maps, rois], verbose=0)
        np.testing.assert_allclose(
            before, ref.psroi_pool(maps, rois, k, 1 / 16, 2, "align"), atol=ATOL, rtol=RTOL
        )
        np.testing.assert_array_equal(before, after)


def test_mixed_precision_output_dtype():
    rng = np.random.default_rng(8)
    maps = rng.normal(size=(1, 6, 7, 18)).astype(np.float32)
    rois = ref.roi_kinds(rng, 6, 7, 1 / 16, 1)
    out = PSRoIPool(k=3, dtype="mixed_float16")(maps, rois)
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy(), ref.psroi_pool(maps, rois, 3, 1 / 16, 2, "align"), atol=1e-2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, "`k` must be an integer >= 1"),
        ({"k": 2.5}, "`k` must be an integer >= 1"),
        ({"samples_per_bin": 0}, "`samples_per_bin` must be an integer >= 1"),
        ({"mode": "max"}, "`mode` must be one of"),
        ({"implementation": "roi_align"}, "`implementation` must be one of"),
        ({"spatial_scale": 0.0}, "`spatial_scale` must be a positive number"),
        ({"spatial_scale": float("nan")}, "`spatial_scale` must be a positive number"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PSRoIPool(**kwargs)


@pytest.mark.parametrize(
    "maps_shape,rois_shape,match",
    [
        ((4, 4, 9), (1, 2, 4), "`score_maps` must have rank 4"),
        ((1, 4, 4, 10), (1, 2, 4), "channels \\(10\\) must be divisible by k\\*k = 9"),
        ((1, 4, 4, 9), (2, 4), "`rois` must have shape \\[B, R, 4\\]"),
        ((1, 4, 4, 9), (1, 2, 5), "`rois` must have shape \\[B, R, 4\\]"),
        ((2, 4, 4, 9), (3, 2, 4), "batch size of `rois` \\(3\\) does not match"),
    ],
)
def test_bad_shapes(maps_shape, rois_shape, match):
    layer = PSRoIPool(k=3)
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(maps_shape, np.float32), np.zeros(rois_shape, np.float32))


def test_bad_shapes_in_functional_model():
    with pytest.raises(ValueError, match="divisible by k\\*k = 49"):
        PSRoIPool(k=7)(keras.Input((None, None, 50)), keras.Input((None, 4)))


def test_nan_rois_rejected():
    rois = np.array([[[0.0, 0.0, np.nan, 10.0]]], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="PSRoIPool: `rois` contains NaN"):
        PSRoIPool(k=1)(np.zeros((1, 4, 4, 1), np.float32), rois)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("crop,height,width,scale", [(4, 6, 7, 1 / 8), (14, 5, 9, 1 / 16), (2, 1, 6, 1 / 16)])
def test_roi_align_is_align_mode_with_one_sample_per_bin(implementation, crop, height, width, scale):
    """RoIAlign (the Faster R-CNN head's crops) samples every bin at its centre with the align
    rule: the numpy reference's align mode with n = 1, on maps that carry the features in every
    bin's channel group."""
    from rfcn_tf.layers.heads import RoIAlign

    rng = np.random.default_rng([crop, height, width])
    features = rng.normal(size=(2, height, width, 3)).astype(np.float32)
    rois = ref.roi_kinds(rng, height, width, scale, 2)
    out = RoIAlign(crop_size=crop, spatial_scale=scale, implementation=implementation)(features, rois)
    maps = np.tile(features, (1, 1, 1, crop * crop))  # bin-major: group (i, j) = the features
    expected = ref.psroi_pool(maps, rois, crop, scale, 1, "align")  # [B, R, k, k, C]
    np.testing.assert_allclose(np.asarray(out), expected.reshape(-1, crop, crop, 3), atol=ATOL, rtol=RTOL)
