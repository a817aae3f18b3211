"""Portable ops (``RFCNConfig.portable``) and the TFLite / ONNX exports built on them: each
portable formulation against TensorFlow's own op, the portable model against the default
one, and the ``.tflite`` / ``.onnx`` files in LiteRT and onnxruntime against the Keras model."""

import json
import os

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.export import export_onnx, export_tflite, files, portable
from rfcn_tf.layers import nms
from rfcn_tf.layers.heads import RoIAlign
from rfcn_tf.layers.sampling import gather_crop_and_resize
from rfcn_tf.layers.transform import ImageResizer
from rfcn_tf.loading import load_detector
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen, trained_like

NAMES = ["circle", "square", "triangle"]


# ------------------------------------------------------------------------------ ops
@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 1, 1, 2), (3, 1, 5, 4), (1, 6, 1, 1)])
@pytest.mark.parametrize("crop_size", [(1, 1), (2, 3), (5, 5)])
def test_gather_crop_and_resize_equals_crop_and_resize(shape, crop_size):
    rng = np.random.default_rng(list(shape) + list(crop_size))
    image = tf.constant(rng.normal(size=shape), tf.float32)
    # Inside, crossing and beyond [0, 1], inverted, zero-size.
    boxes = rng.uniform(-0.6, 1.6, size=(40, 4)).astype(np.float32)
    boxes[:4] = [[0.2, 0.2, 0.2, 0.2], [0.9, 0.8, 0.1, 0.3], [0, 0, 1, 1], [-2, -2, -1, -1]]
    indices = rng.integers(0, shape[0], 40).astype(np.int32)
    weights = tf.constant(rng.normal(size=(40,) + crop_size + (shape[-1],)), tf.float32)
    results = []
    for crop in (
        lambda: tf.image.crop_and_resize(image, boxes, indices, crop_size, extrapolation_value=0.25),
        lambda: gather_crop_and_resize(image, boxes, indices, crop_size, 0.25),
    ):
        with tf.GradientTape() as tape:
            tape.watch(image)
            values = crop()
            loss = tf.reduce_sum(values * weights)
        results.append((values.numpy(), tape.gradient(loss, image).numpy()))
    (expected, expected_grad), (values, grad) = results
    np.testing.assert_allclose(values, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-5, rtol=1e-5)
    assert np.any(values != 0.25)
    if max(shape[1:3]) > 1:  # (a 1×1 image has extent 0: every sample is on it)
        assert np.any(values == 0.25)  # the extrapolation branch is exercised too


def test_roi_align_implementations_agree():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 9, 11, 5)).astype(np.float32)
    rois = rng.uniform(-20, 200, size=(2, 6, 4)).astype(np.float32)
    default = RoIAlign(crop_size=4)(features, rois).numpy()
    gathered = RoIAlign(crop_size=4, implementation="gather")(features, rois).numpy()
    np.testing.assert_allclose(gathered, default, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="`implementation` must be one of"):
        RoIAlign(implementation="bilinear")


def random_detections(rng, batch, rois, classes, size):
    corners = rng.uniform(0, size, size=(batch, rois, 2, 2))
    boxes = np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32)
    scores = rng.uniform(0, 1, size=(batch, rois, classes)).astype(np.float32)  # no ties
    return boxes, scores


@pytest.mark.parametrize("threshold", [0.0, 0.6])
def test_per_class_nms_equals_combined_non_max_suppression(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    boxes, scores = random_detections(rng, 3, 60, 4, 100)
    sizes = np.full((3, 2), 100, np.int32)
    for m in (10, 300):
        out = nms.per_class_nms(tf.constant(boxes), tf.constant(scores), sizes, m, 0.3, threshold)
        ref = tf.image.combined_non_max_suppression(
            boxes[:, :, None],
            scores,
            m,
            m,
            iou_threshold=0.3,
            score_threshold=threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        count = ref.valid_detections.numpy()
        np.testing.assert_array_equal(out[3].numpy(), count)
        assert 0 < count.min() and (m == 10 or count.max() < m)
        np.testing.assert_allclose(out[0].numpy(), ref.nmsed_boxes.numpy(), atol=1e-4)
        np.testing.assert_allclose(out[1].numpy(), ref.nmsed_scores.numpy(), atol=1e-7)
        for b in range(3):
            np.testing.assert_array_equal(
                out[2].numpy()[b, : count[b]], ref.nmsed_classes.numpy()[b, : count[b]]
            )


def test_per_image_unrolled_equals_map_fn():
    rng = np.random.default_rng(5)
    boxes, scores = random_detections(rng, 3, 50, 1, 80)
    scores = scores[..., 0]
    eager = nms.nms_per_image(tf.constant(boxes), tf.constant(scores), 20, 0.5, 0.1)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None])])
    def looped(b, s):  # unknown batch: tf.map_fn
        return nms.nms_per_image(b, s, 20, 0.5, 0.1)

    graph = looped.get_concrete_function().graph
    assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    for a, b in zip(eager, looped(boxes, scores)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for i in range(3):  # and each image is what the plain NMS keeps
        keep = tf.image.non_max_suppression(boxes[i], scores[i], 20, 0.5, 0.1).numpy()
        np.testing.assert_array_equal(eager[0].numpy()[i, : len(keep)], keep)
        assert eager[1].numpy()[i] == len(keep)


@pytest.mark.parametrize("shape", [(2, 100, 130), (1, 400, 300), (1, 192, 320), (1, 192, 200)])
def test_portable_resize_equals_the_antialiased_resize(shape):
    images = np.random.default_rng(0).uniform(0, 255, size=shape + (3,)).astype(np.float32)
    default = ImageResizer(192, 320)(images)
    resized = ImageResizer(192, 320, portable=True)(images)
    assert resized[0].shape == default[0].shape
    np.testing.assert_allclose(resized[0].numpy(), default[0].numpy(), atol=2e-3)
    np.testing.assert_array_equal(resized[1].numpy(), default[1].numpy())
    np.testing.assert_array_equal(resized[2].numpy(), default[2].numpy())


# ------------------------------------------------------------------------------ models
@pytest.fixture(scope="module")
def model():
    """A small model, xywh boxes (so the export's conversion shows), trained-like BatchNorm
    statistics (which the converters fold: identity ones would hide a wrong fold),
    sharpened class maps (well-ordered scores)."""
    keras.utils.set_random_seed(11)
    m = RFCN(config=RFCNConfig.small(num_classes=3, class_names=NAMES, bounding_box_format="xywh"))
    trained_like(m, seed=11)
    sharpen(m)
    return m


@pytest.fixture(scope="module")
def faster_model(model):
    """The same, with the Faster R-CNN head (conv5 per RoI: its BatchNorms run on crops)."""
    m = RFCN(config=model.config.replace(head="faster_rcnn"))
    trained_like(m, seed=12)
    sharpen(m)
    return m


@pytest.fixture(scope="module")
def models(model, faster_model):
    return {"rfcn": model, "faster_rcnn": faster_model}


def photos(count, height, width, seed=0):
    return np.stack([random_image(height, width, seed + i) for i in range(count)]).astype(np.float32)


def assert_same_detections(out, ref, box_tol=1.0, score_tol=1e-3):
    """Same count, and each detection's label, box (within ``box_tol`` px) and score (within
    ``score_tol``) found once, in any order: with trained-like BatchNorms the converters'
    folding rounds otherwise, and near-tied scores may swap ranks."""
    ref = {k: np.asarray(v) for k, v in ref.items()}
    assert ref["num_detections"].min() > 0
    assert_same_detections_any_order(
        {k: np.asarray(v) for k, v in out.items()}, ref, box_atol=box_tol, score_atol=score_tol
    )


@pytest.mark.parametrize("head", ["rfcn", "faster_rcnn"])
def test_portable_model_detects_like_the_default_one(head, models):
    m = models[head]
    twin = portable.portable_model(m)
    assert twin.config.portable and not m.config.portable
    assert portable.portable_model(twin) is twin
    for images in (photos(2, 192, 320), photos(1, 150, 250, seed=5)):  # resized inside
        assert_same_detections(twin(images), m(images), box_tol=1e-2, score_tol=1e-5)


def test_portable_model_round_trips_through_keras_file(model, tmp_path):
    twin = portable.portable_model(model)
    twin.save(tmp_path / "portable.keras")
    loaded = keras.models.load_model(tmp_path / "portable.keras")
    assert loaded.config.portable
    assert loaded.get_layer("class_pool").implementation == "gather"
    images = photos(1, 192, 320)
    assert_same_detections(loaded(images), twin(images), box_tol=0, score_tol=0)


# ------------------------------------------------------------------------------ exports
@pytest.fixture(scope="module")
def exports(model, faster_model, tmp_path_factory):
    """R-FCN: TFLite float32 / float16 / dynamic int8 at the default size and at 240×300
    (resized inside), and ONNX at both sizes; Faster R-CNN: TFLite float32 and ONNX at the
    default size → {(format, quantization, size): version dir}, {(format, "faster_rcnn"): …}."""
    root = tmp_path_factory.mktemp("portable")
    out = {}
    for size in (None, (240, 300)):
        for q in ("none",) if size else files.QUANTIZATIONS:
            out["tflite", q, size] = export_tflite(
                model, root / f"tflite_{q}", input_size=size, quantization=q
            )
        out["onnx", "none", size] = export_onnx(model, root / "onnx", input_size=size)
    out["tflite", "faster_rcnn"] = export_tflite(faster_model, root / "faster_tflite")
    out["onnx", "faster_rcnn"] = export_onnx(faster_model, root / "faster_onnx")
    return out


def run_tflite(directory, image):
    runner = Interpreter(model_path=os.path.join(directory, "model.tflite")).get_signature_runner()
    return runner(images=image)


def run_onnx(directory, image):
    session = onnxruntime.InferenceSession(
        os.path.join(directory, "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": image})))


@pytest.mark.slow  # the exports fixture: eight conversions
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("head, size", [("rfcn", None), ("rfcn", (240, 300)), ("faster_rcnn", None)])
def test_export_detects_like_the_keras_model(fmt, head, size, models, exports):
    """The file in LiteRT / onnxruntime against the live model, at the exports' stated
    accuracy: the same count and labels, boxes within 1 px, scores within 1e-3."""
    model = models[head]
    directory = exports[fmt, "none", size] if head == "rfcn" else exports[fmt, head]
    height, width = size or files.default_input_size(model.config)
    run = run_tflite if fmt == "tflite" else run_onnx
    for seed in range(3):
        image = photos(1, height, width, seed=seed)
        assert_same_detections(run(directory, image), model(image))


@pytest.mark.slow  # the exports fixture: eight conversions
def test_tflite_uses_builtin_ops_only_and_records_them(exports):
    for key, directory in exports.items():
        if key[0] != "tflite":
            continue
        q = "none" if key[1] == "faster_rcnn" else key[1]
        info = json.load(open(os.path.join(directory, "export.json")))
        with open(os.path.join(directory, "model.tflite"), "rb") as f:
            ops = portable.tflite_ops(f.read())
        assert info["ops"] == ops and info["quantization"] == q
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
        assert {"CONV_2D", "GATHER", "NON_MAX_SUPPRESSION_V4"} <= set(ops)
        assert "CROP_AND_RESIZE" not in ops
        assert sorted(os.listdir(directory)) == [
            "export.json",
            "labels.txt",
            "model.tflite",
            "rfcn_config.json",
        ]


@pytest.mark.slow  # the exports fixture: eight conversions
def test_quantised_tflite_files_are_smaller_and_close(model, exports):
    sizes = {
        q: os.path.getsize(os.path.join(exports["tflite", q, None], "model.tflite"))
        for q in files.QUANTIZATIONS
    }
    assert sizes["float16"] < 0.6 * sizes["none"] and sizes["dynamic_int8"] < 0.35 * sizes["none"]
    image = photos(1, *files.default_input_size(model.config))
    ref = model(image)
    half = run_tflite(exports["tflite", "float16", None], image)
    # float16 weights: the best detections keep their label and place.
    np.testing.assert_array_equal(half["labels"][0, :5], ref["labels"].numpy()[0, :5])
    np.testing.assert_allclose(half["boxes"][0, :5], ref["boxes"].numpy()[0, :5], atol=3.0)
    int8 = run_tflite(exports["tflite", "dynamic_int8", None], image)
    assert int8["num_detections"][0] > 0 and np.all(np.isfinite(int8["boxes"]))


@pytest.mark.slow  # the exports fixture: eight conversions
def test_onnx_export_records_opset_and_ops(exports):
    directory = exports["onnx", "none", None]
    info = json.load(open(os.path.join(directory, "export.json")))
    assert info["format"] == "onnx" and info["opset"] == files.ONNX_OPSET
    assert "NonMaxSuppression" in info["ops"] and "Conv" in info["ops"]
    assert "CropAndResize" not in info["ops"]
    assert open(os.path.join(directory, "labels.txt")).read().split() == NAMES


@pytest.mark.slow  # the exports fixture: eight conversions
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_loaded_export_detects_like_the_model_on_images_of_any_size(fmt, model, exports):
    detector, names = load_detector(os.path.dirname(exports[fmt, "none", (240, 300)]))
    assert names == NAMES and detector.config.bounding_box_format == "xywh"
    image = photos(1, 240, 300, seed=7)
    ref = model(image)
    out = detector(image)
    ref = {
        **{k: v.numpy() for k, v in ref.items()},
        "boxes": keras.utils.bounding_boxes.convert_format(ref["boxes"], "xywh", "yxyx"),
    }
    assert_same_detections(out, ref)  # the export's own size: the model's detections, yxyx
    small = detector(photos(2, 120, 150, seed=8))  # fitted into 240×300, boxes mapped back
    assert small["boxes"].shape == (2, 100, 4) and small["num_detections"].min() > 0
    assert small["boxes"][..., 2].max() <= 120 and small["boxes"][..., 3].max() <= 150


@pytest.mark.parametrize("size", [(0, 10), (10,), (10, 10, 3), (2.5, 10), (100000, 10)])
def test_bad_input_size_is_refused_before_writing(model, size, tmp_path):
    with pytest.raises(ValueError, match="input_size must be"):
        export_tflite(model, tmp_path / "t", input_size=size)
    assert not (tmp_path / "t").exists()


def test_failed_conversion_leaves_nothing(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_tflite(model, tmp_path / "u", quantization="int4")
    assert not (tmp_path / "u").exists()

    def fail(*args, **kwargs):
        raise ValueError("this model cannot be written with TFLite's built-in ops: boom")

    monkeypatch.setattr(portable, "to_tflite", fail)
    with pytest.raises(ValueError, match="built-in ops"):
        export_tflite(model, tmp_path / "t")
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_onnx_opset_too_old_is_refused_naming_the_option(model, tmp_path):
    with pytest.raises(ValueError, match="opset 9 cannot express this model.*--opset 17"):
        export_onnx(model, tmp_path / "o", opset=9)
    assert not (tmp_path / "o").exists()
