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
from rfcn_tf import boxes as box_ops
from rfcn_tf.export import export_saved_model
from rfcn_tf.layers.rpn import flatten_rpn
from rfcn_tf.loading import load_detector
from rfcn_tf.model import LOSS_NAMES
from tests.backend_cases_model import DETECTION_KEYS, adapted_statistics, detect_and_losses
from tests.backend_helpers import on_backend
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen, trained_like

pytestmark = pytest.mark.slow  # a subprocess per backend, a JAX training run

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


def _pairwise_iou(a):
    lo = np.maximum(a[:, None, :2], a[None, :, :2])
    hi = np.minimum(a[:, None, 2:], a[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = np.prod(a[:, 2:] - a[:, :2], -1)
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _near_ties(model, images):
    """How close TensorFlow's run of ``model`` on ``images`` comes to a decision that float32
    rounding elsewhere could flip: for both NMS passes, the smallest |IoU − threshold| of two
    candidates and the smallest score gap of two overlapping ones (which suppresses which), and
    the smallest |score − score_threshold| of a detection candidate."""
    cfg = model.config
    raw = model.features_model({"images": images, "image_sizes": None}, training=False)
    sizes = np.asarray(raw["image_sizes"], np.float32)
    logits, deltas = (np.asarray(t) for t in flatten_rpn(raw["rpn_logits"], raw["rpn_deltas"]))
    anchors = np.asarray(raw["anchors"])
    maps = {name: raw[name] for name in model._map_names}
    class_logits, box_deltas = (np.asarray(t) for t in model.roi_head({**maps, "rois": raw["proposals"]}))
    scores = np.asarray(keras.ops.softmax(class_logits, axis=-1))[..., 1:]
    detections = np.asarray(box_ops.clip(box_ops.decode(raw["proposals"], box_deltas, cfg.box_std), sizes))
    proposals = np.asarray(box_ops.clip(box_ops.decode(anchors[None], deltas), sizes))
    valid = np.asarray(raw["proposal_valid"])
    ties = {"rpn_iou": np.inf, "rpn_order": np.inf, "iou": np.inf, "order": np.inf, "threshold": np.inf}

    def nms_ties(boxes, keys, threshold, iou_key, order_key):
        if len(boxes) < 2:
            return
        iou, upper = _pairwise_iou(boxes), np.triu(np.ones((len(boxes),) * 2, bool), 1)
        ties[iou_key] = min(ties[iou_key], np.abs(iou - threshold)[upper].min())
        overlapping = upper & (iou > threshold)
        if overlapping.any():
            ties[order_key] = min(ties[order_key], np.abs(keys[:, None] - keys[None, :])[overlapping].min())

    for b in range(len(images)):
        inside = np.all((anchors[:, :2] + anchors[:, 2:]) / 2 < sizes[b], -1)
        nms_ties(proposals[b][inside], logits[b][inside], cfg.rpn_nms_iou, "rpn_iou", "rpn_order")
        for c in range(cfg.num_classes):
            s = scores[b, :, c]
            ties["threshold"] = min(ties["threshold"], np.abs(s[valid[b]] - cfg.score_threshold).min())
            keep = valid[b] & (s > cfg.score_threshold)
            nms_ties(detections[b][keep], s[keep], cfg.nms_iou, "iou", "order")
    return ties


# Between backends rounding moves boxes by ~1e-5 px (an IoU of these 10–60 px boxes by < 1e-6),
# logits by ≤ 1.3e-5 on logits up to 13 and so scores by ≤ 3e-6 (measured): decisions at least
# this far from a tie are the same on every backend.
TIE_MARGINS = {"rpn_iou": 1e-5, "rpn_order": 1e-5, "iou": 1e-5, "order": 1e-5, "threshold": 1e-5}


def _conditioned_model(head, seeds):
    """The model of the first seed whose TensorFlow run is far from every tie
    (``_near_ties``), so that every backend must make the same decisions."""
    images = _batch()[0]
    for seed in seeds:
        model = _model(head, seed)
        ties = _near_ties(model, images)
        if all(ties[k] >= margin for k, margin in TIE_MARGINS.items()):
            return model
    raise AssertionError(f"no seed of {list(seeds)} gives a {head} model far from NMS ties")


def _model(head, seed):
    keras.utils.set_random_seed(seed)
    model = RFCN(
        num_classes=3,
        backbone="small",
        head=head,
        min_side=SIDE,
        max_side=SIDE,
        anchor_scales=(16, 32, 48),
        rpn_post_nms_test=50,  # fewer candidates, fewer near-ties to avoid (_conditioned_model)
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
        _conditioned_model(head, seeds=range(10 + 100 * i, 30 + 100 * i)).save(path)
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
    # In any order: two classes' scores within rounding of each other may swap places.
    assert_same_detections_any_order(
        {name: out[key(name)] for name in DETECTION_KEYS},
        {name: ref[key(name)] for name in DETECTION_KEYS},
        box_atol=1e-3,
        score_atol=1e-4,
    )


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
    _model("rfcn", seed=16).save(start)  # its trained model is far from NMS ties (asserted below)
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
    ties = _near_ties(model, images)
    assert all(ties[k] >= margin for k, margin in TIE_MARGINS.items()), ties  # else another seed
    assert not np.allclose(model.get_weights()[0], keras.saving.load_model(start).get_weights()[0])
    for out in (
        model.predict(images, verbose=0),
        load_detector(export_saved_model(model, tmp_path / "export"))[0](images),
    ):
        assert jax_run["det_num_detections"].min() > 0
        expected = {name: jax_run[f"det_{name}"] for name in DETECTION_KEYS}
        assert_same_detections_any_order(out, expected, box_atol=1e-3, score_atol=1e-4)


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


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_bad_target_arrays_are_refused_before_the_step(tmp_path, backend):
    """Off TensorFlow the graph has no run-time checks (a jitted JAX step cannot raise):
    target arrays are checked before Keras's loop, with the first line saying what is wrong."""
    path = tmp_path / "model.keras"
    _model("rfcn", seed=4).save(path)
    images, boxes, labels = _batch()
    out = on_backend(
        backend,
        "tests.backend_cases_model:refused_targets",
        tmp_path,
        dict(model_path=str(path)),
        images=images,
        boxes=boxes,
        labels=labels,
    )
    classes = keras.saving.load_model(path).config.num_classes
    assert str(out["label"]).startswith(
        f"target labels must be in 0..{classes - 1} (or -1 for padding); got "
    ), out
    assert str(out["nan"]).startswith("target boxes contain NaN or Inf: ") and "[image, row] = [0, 0]" in str(
        out["nan"]
    ), out


def test_adapt_batchnorm_gives_every_backend_the_same_statistics(tmp_path):
    """AdaBN on a per-image-normalised model (both new in 0.8): one file, the same images of
    another "site", the same statistics under JAX and PyTorch as under TensorFlow."""
    path = tmp_path / "model.keras"
    keras.utils.set_random_seed(4)
    model = RFCN(
        num_classes=3, backbone="small", min_side=SIDE, max_side=SIDE, input_normalization="per_image"
    )
    trained_like(model, 4)
    model.save(path)
    images = np.stack([random_image(SIDE, SIDE, seed) // 2 + 60 for seed in (3, 4, 5)])
    options = dict(model_path=str(path), batch_size=2)
    ref = adapted_statistics(**options, images=images)
    assert len(ref) == 18  # the small backbone's 9 BatchNorms
    first = model.get_layer("convolutions").get_layer(model.trunk.name).get_layer("conv1_bn")
    assert not np.allclose(ref["mean0"], keras.ops.convert_to_numpy(first.moving_mean), atol=1e-2)
    for backend in OTHERS:
        out = on_backend(
            backend, "tests.backend_cases_model:adapted_statistics", tmp_path, options, images=images
        )
        for key, value in ref.items():
            # float32 statistics of up to 64×64×3 values: sums in another order.
            np.testing.assert_allclose(out[key], value, rtol=1e-4, atol=1e-5, err_msg=f"{backend} {key}")
