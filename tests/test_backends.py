"""One R-FCN on every Keras 3 backend: the same ``.keras`` weights give the same detections
and losses under TensorFlow, JAX and PyTorch (each in a process of its own), and a model
trained under JAX loads under TensorFlow and exports a SavedModel that detects the same.

Tolerances: float32 convolutions summed in another order differ by ~1e-6 relative, which
moves a box by far less than 1e-3 px and a score by far less than 1e-4; the samplers draw
the same anchors and RoIs on every backend (``rfcn_tf.ops.random``), so the losses agree to
float32 rounding (1e-4 relative leaves two orders of magnitude)."""

import keras
import numpy as np
import pytest

from rfcn_tf import RFCN
from rfcn_tf.export import export_saved_model
from rfcn_tf.loading import load_detector
from rfcn_tf.model import LOSS_NAMES
from tests.backend_cases_model import DETECTION_KEYS, detect_and_losses
from tests.backend_helpers import on_backend
from tests.model_helpers import random_image, sharpen, trained_like

HEADS = ("rfcn", "faster_rcnn")
OTHERS = ("jax", "torch")
SIDE = 64  # the images are at the model's scale: its resize is the identity on every backend


def _batch():
    images = np.stack([random_image(SIDE, SIDE, seed) for seed in (1, 2)])
    boxes = np.array(
        [
            [[8, 6, 40, 30], [20, 28, 60, 62], [0, 0, 0, 0]],
            [[4, 4, 60, 60], [30, 10, 50, 20], [33, 33, 60, 50]],
        ],
        np.float32,
    )
    labels = np.array([[0, 2, -1], [1, 1, 0]], np.int32)
    return images, boxes, labels


def _model(head, seed):
    keras.utils.set_random_seed(seed)
    model = RFCN(
        num_classes=3,
        backbone="small",
        head=head,
        min_side=SIDE,
        max_side=SIDE,
        anchor_scales=(16, 32, 48),
        seed=seed,
    )
    trained_like(model, seed)
    sharpen(model, seed)
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every backend's detections and losses of the same two models (one per head)."""
    tmp = tmp_path_factory.mktemp("backends")
    paths = []
    for i, head in enumerate(HEADS):
        path = tmp / f"{head}.keras"
        _model(head, seed=10 + i).save(path)
        paths.append(str(path))
    images, boxes, labels = _batch()
    arrays = dict(images=images, boxes=boxes, labels=labels)
    options = dict(model_paths=paths, step=5)
    out = {"tensorflow": detect_and_losses(**arrays, **options)}
    out["tensorflow"] = {k: keras.ops.convert_to_numpy(v) for k, v in out["tensorflow"].items()}
    for backend in OTHERS:
        out[backend] = on_backend(
            backend, "tests.backend_cases_model:detect_and_losses", tmp, options, **arrays
        )
    return out


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("head", range(len(HEADS)), ids=HEADS)
def test_same_detections(runs, backend, head):
    ref, out = runs["tensorflow"], runs[backend]
    key = lambda name: f"{head}/det_{name}"  # noqa: E731
    assert set(DETECTION_KEYS) == {k.split("det_")[1] for k in ref if k.startswith(f"{head}/det_")}
    assert ref[key("num_detections")].min() > 0  # something to compare
    np.testing.assert_array_equal(out[key("num_detections")], ref[key("num_detections")])
    np.testing.assert_array_equal(out[key("labels")], ref[key("labels")])
    np.testing.assert_allclose(out[key("boxes")], ref[key("boxes")], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out[key("confidence")], ref[key("confidence")], rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("head", range(len(HEADS)), ids=HEADS)
def test_same_losses(runs, backend, head):
    ref, out = runs["tensorflow"], runs[backend]
    for name in (*LOSS_NAMES, "total"):
        key = f"{head}/loss_{name}"
        assert ref[key] > 0, key  # every loss has something sampled
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-4, err_msg=key)


def test_trained_under_jax_detects_the_same_under_tensorflow(tmp_path):
    """A few SGD steps under JAX's own ``fit`` (the whole step jitted), saved; TensorFlow
    loads the file and gives JAX's detections, and so does its SavedModel export."""
    start, trained = tmp_path / "start.keras", tmp_path / "trained.keras"
    _model("rfcn", seed=3).save(start)
    images, boxes, labels = _batch()
    jax_run = on_backend(
        "jax",
        "tests.backend_cases_model:fit_and_save",
        tmp_path,
        dict(model_path=str(start), out_path=str(trained), steps=3),
        images=images,
        boxes=boxes,
        labels=labels,
    )
    assert np.all(np.isfinite(jax_run["loss"])) and jax_run["loss"][-1] < jax_run["loss"][0]
    model = keras.saving.load_model(trained)
    assert not np.allclose(model.get_weights()[0], keras.saving.load_model(start).get_weights()[0])
    for out in (
        model.predict(images, verbose=0),
        load_detector(export_saved_model(model, tmp_path / "export"))[0](images),
    ):
        assert jax_run["det_num_detections"].min() > 0
        np.testing.assert_array_equal(out["num_detections"], jax_run["det_num_detections"])
        np.testing.assert_array_equal(out["labels"], jax_run["det_labels"])
        np.testing.assert_allclose(out["boxes"], jax_run["det_boxes"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(out["confidence"], jax_run["det_confidence"], rtol=0, atol=1e-4)


def test_jax_data_parallel_step_equals_one_device(tmp_path, monkeypatch):
    """``keras.distribution.DataParallel`` over 2 (virtual CPU) JAX devices: one step on the
    global batch of 2 gives the weights one device gives on the same batch. The two differ
    only in the order of the gradient's sum over the batch (each device reduces its half,
    then the halves are added), float32 rounding far below 1e-5 of a weight's scale."""
    path = tmp_path / "start.keras"
    _model("rfcn", seed=4).save(path)
    images, boxes, labels = _batch()
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    out = on_backend(
        "jax",
        "tests.backend_cases_model:data_parallel_step",
        tmp_path,
        dict(model_path=str(path)),
        images=images,
        boxes=boxes,
        labels=labels,
    )
    assert int(out["devices"]) == 2
    start = keras.saving.load_model(path).weights
    moved = 0
    for i, weight in enumerate(start):
        single, parallel = out[f"single/{i}"], out[f"parallel/{i}"]
        scale = max(float(np.abs(single).max()), 1e-3)
        np.testing.assert_allclose(parallel, single, rtol=0, atol=1e-5 * scale, err_msg=weight.path)
        moved += not np.array_equal(single, keras.ops.convert_to_numpy(weight))
    assert moved > len(start) // 4  # the step changed the model
