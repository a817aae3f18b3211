"""SavedModel export: layout, atomic versions, the serving signatures (in a clean process and
through saved_model_cli), bad requests, and load_detector."""

import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.export import export_saved_model, freeze_for_inference
from rfcn_tf.export import saved_model as saved_model_module
from rfcn_tf.loading import load_detector
from tests.image_headers import BOMBS
from tests.model_helpers import random_image, sharpen, trained_like, write_png

NAMES = ["circle", "square", "triangle", "star"]
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
HERE = os.path.dirname(os.path.abspath(__file__))


def xywh_to_yxyx(boxes):
    x, y, w, h = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    return np.stack([y, x, y + h, x + w], axis=-1)


@pytest.fixture(scope="module")
def model():
    """A small model in xywh format (so the exports' yxyx conversion is exercised), with
    trained-like BatchNorm statistics and sharpened class maps so detections are well
    ordered."""
    keras.utils.set_random_seed(7)
    m = RFCN(config=RFCNConfig.small(num_classes=4, class_names=NAMES, bounding_box_format="xywh"))
    trained_like(m, seed=7)  # BatchNorm statistics a wrong fold would show in
    sharpen(m)
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models") / "rfcn"
    return export_saved_model(model, base)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


def serve(loaded, signature, **inputs):
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


def assert_same_detections(served, predicted, sizes, atol=1e-3):
    """Serving outputs (normalised yxyx) == predict outputs (xywh pixels) for each image."""
    counts = predicted["num_detections"]
    np.testing.assert_array_equal(served["num_detections"], counts.astype(np.float32))
    for b, n in enumerate(counts):
        height, width = sizes[b]
        scale = np.array([height, width, height, width], np.float64)
        np.testing.assert_allclose(
            served["detection_boxes"][b, :n] * scale, xywh_to_yxyx(predicted["boxes"][b, :n]), atol=atol
        )
        np.testing.assert_allclose(
            served["detection_scores"][b, :n], predicted["confidence"][b, :n], atol=1e-5
        )
        np.testing.assert_array_equal(served["detection_classes"][b, :n], predicted["labels"][b, :n])
        # Padding rows: zero boxes and scores, class -1.
        assert np.all(served["detection_boxes"][b, n:] == 0)
        assert np.all(served["detection_scores"][b, n:] == 0)
        assert np.all(served["detection_classes"][b, n:] == -1)


# ------------------------------------------------------------------------------ layout
def test_layout_labels_and_config(exported):
    base = os.path.dirname(exported)
    assert os.path.basename(exported) == "1" and os.listdir(base) == ["1"]  # no temp dirs
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))
    with open(os.path.join(exported, "assets.extra", "labels.txt")) as f:
        assert f.read().splitlines() == NAMES
    with open(os.path.join(exported, "assets.extra", "rfcn_config.json")) as f:
        config = RFCNConfig.from_dict(json.load(f))
    assert config.num_classes == 4 and config.class_names == tuple(NAMES)
    assert config.bounding_box_format == "xywh"


def fake_saved_model(model, path):
    """Stands in for the (slow to trace and freeze) SavedModel where only the file handling
    is tested."""
    with open(os.path.join(path, "saved_model.pb"), "w") as f:
        f.write("fake")


@pytest.fixture
def fake_archive(monkeypatch):
    monkeypatch.setattr(saved_model_module, "write_saved_model", fake_saved_model)


def test_versions_overwrite_and_class_name_override(model, tmp_path, fake_archive):
    base = tmp_path / "m"
    (base / "7").mkdir(parents=True)
    (base / "notes").mkdir()  # not a version: ignored
    v8 = export_saved_model(model, base, class_names=["a", "b", "c", "d"])
    assert v8 == os.path.join(base, "8")
    with open(os.path.join(v8, "assets.extra", "labels.txt")) as f:
        assert f.read().splitlines() == ["a", "b", "c", "d"]
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(model, base, version=8)
    marker = os.path.join(v8, "marker")
    open(marker, "w").close()
    assert export_saved_model(model, base, version=8, overwrite=True) == v8
    assert not os.path.exists(marker) and os.path.isfile(os.path.join(v8, "saved_model.pb"))
    named = export_saved_model(model, tmp_path, name="other", version=3)
    assert named == os.path.join(tmp_path, "other", "3")
    assert sorted(os.listdir(base)) == ["7", "8", "notes"]  # nothing half-written left


def test_version_directory_is_readable_by_other_users(model, tmp_path, fake_archive):
    """The staging directory comes from mkdtemp (0700); a server running as another user
    must still read the version (the process umask decides, as for any new directory)."""
    umask = os.umask(0o022)
    try:
        version = export_saved_model(model, tmp_path / "m")
    finally:
        os.umask(umask)
    assert os.stat(version).st_mode & 0o777 == 0o755


def test_failed_export_leaves_nothing(model, tmp_path, monkeypatch, fake_archive):
    old = export_saved_model(model, tmp_path, version=1)

    def fail(*args):
        raise OSError("disk full")

    def check_unchanged():
        assert os.listdir(tmp_path) == ["1"]  # no version 2, no temporary directory
        with open(os.path.join(old, "assets.extra", "labels.txt")) as f:
            assert f.read().splitlines() == NAMES  # the old version is intact

    with monkeypatch.context() as patch:
        patch.setattr(saved_model_module, "write_extras", fail)  # after the SavedModel is written
        for kwargs in (dict(), dict(version=1, overwrite=True)):
            with pytest.raises(OSError, match="disk full"):
                export_saved_model(model, tmp_path, class_names=list("abcd"), **kwargs)
            check_unchanged()

    rename = os.rename

    def rename_fails_for_the_new_export(src, dst):
        if os.path.basename(src).startswith(".tmp-"):
            raise OSError("rename failed")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_fails_for_the_new_export)
    with pytest.raises(OSError, match="rename failed"):
        export_saved_model(model, tmp_path, version=1, overwrite=True, class_names=list("abcd"))
    check_unchanged()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(version=-1), ValueError, "non-negative integer"),
        (dict(version="2"), ValueError, "non-negative integer"),
        (dict(class_names=["a", "b"]), ValueError, "2 class names given for a model with 4 classes"),
        (dict(class_names=["a", "b\nc", "d", "e"]), ValueError, "one-line"),
    ],
)
def test_bad_export_arguments(model, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export_saved_model(model, tmp_path / "m", **kwargs)
    assert not os.path.exists(tmp_path / "m") or os.listdir(tmp_path / "m") == []


def test_export_needs_an_rfcn(tmp_path):
    with pytest.raises(TypeError, match="RFCN model"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path)
    with pytest.raises(FileNotFoundError, match="no model file"):
        export_saved_model(str(tmp_path / "missing.keras"), tmp_path)


# ------------------------------------------------------------------------------ serving
@pytest.mark.slow
def test_clean_process_client_matches_predict(model, exported, tmp_path):
    """Both signatures, run by a process that never imports rfcn_tf, equal model.predict."""
    same = [random_image(96, 128, 1), random_image(96, 128, 2)]
    mixed = [random_image(80, 112, 3), random_image(130, 90, 4)]
    same_files = [write_png(tmp_path / f"same{i}.png", im) for i, im in enumerate(same)]
    mixed_files = [write_png(tmp_path / f"mixed{i}.png", im) for i, im in enumerate(mixed)]
    npz, response = tmp_path / "out.npz", tmp_path / "response.json"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "serving_client.py"),
            exported,
            str(npz),
            "--images",
            *same_files,
            "--encoded",
            *mixed_files,
            "--json",
            str(response),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(np.load(npz))

    default = {k: out[f"default_{k}"] for k in OUTPUTS}
    predicted = model.predict(np.stack(same), verbose=0)
    assert predicted["num_detections"].min() > 0
    assert_same_detections(default, predicted, [(96, 128)] * 2)

    from_bytes = {k: out[f"bytes_{k}"] for k in OUTPUTS}
    predicted = model.predict(pack_images(mixed), verbose=0)
    assert predicted["num_detections"].min() > 0
    assert_same_detections(from_bytes, predicted, [(80, 112), (130, 90)])

    with open(response) as f:
        rows = json.load(f)["predictions"]
    assert len(rows) == 2 and sorted(rows[0]) == sorted(OUTPUTS)
    assert np.array(rows[0]["detection_boxes"]).shape == (model.config.max_detections, 4)


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(model, exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [cli, "show", "--dir", exported, "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)(?=signature_def\[|\Z)", proc.stdout, re.S))
    assert {"serving_default", "serving_bytes", "predict_padded"} <= set(blocks)

    def listed(block, kind, name, dtype, shape):
        return re.search(
            rf"{kind}\['{name}'\] tensor_info:\s+dtype: {dtype}\s+"
            rf"shape: {re.escape(shape)}\n",
            block,
        )

    assert listed(blocks["serving_default"], "inputs", "images", "DT_UINT8", "(-1, -1, -1, 3)")
    assert listed(blocks["serving_bytes"], "inputs", "encoded_images", "DT_STRING", "(-1)")
    m = model.config.max_detections
    expected = {
        "detection_boxes": f"(-1, {m}, 4)",
        "detection_scores": f"(-1, {m})",
        "detection_classes": f"(-1, {m})",
        "num_detections": "(-1)",
    }
    for signature in ("serving_default", "serving_bytes"):
        block = blocks[signature]
        assert "DT_INVALID" not in block
        assert "Method name is: tensorflow/serving/predict" in block
        for name, shape in expected.items():
            assert listed(block, "outputs", name, "DT_FLOAT", shape), (signature, name, block)


# ------------------------------------------------------------------------------ bad requests
def png_bytes(image):
    return tf.io.encode_png(image).numpy()


@pytest.mark.slow
@pytest.mark.parametrize(
    "signature, inputs, match",
    [
        ("serving_bytes", [b"this is not an image"], "not a PNG, JPEG, GIF, BMP or WebP image"),
        ("serving_bytes", [png_bytes(random_image(8, 8, 0))[:40]], "PNG"),  # truncated
        ("serving_bytes", [png_bytes(random_image(8, 8, 0)), b""], "empty, no image to decode"),
        *[("serving_bytes", [data], f"declares {declared} pixels") for data, declared in BOMBS.values()],
        ("serving_bytes", np.zeros([0], object), "empty batch"),
        ("serving_default", np.zeros([1, 0, 5, 3], np.uint8), "at least 1x1 pixels"),
        ("serving_default", np.zeros([0, 8, 8, 3], np.uint8), "empty batch"),
    ],
)
def test_bad_requests_fail_clearly(loaded, signature, inputs, match):
    name = "encoded_images" if signature == "serving_bytes" else "images"
    dtype = tf.string if signature == "serving_bytes" else tf.uint8
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        serve(loaded, signature, **{name: tf.constant(inputs, dtype)})


def test_grayscale_and_rgba_png_are_converted(loaded):
    rgb = random_image(96, 128, 5)
    gray = rgb[..., :1]
    rgba = np.concatenate([rgb, np.full((96, 128, 1), 17, np.uint8)], axis=-1)
    served = serve(loaded, "serving_bytes", encoded_images=tf.constant([png_bytes(gray), png_bytes(rgba)]))
    expected = serve(
        loaded, "serving_default", images=tf.constant(np.stack([np.repeat(gray, 3, axis=-1), rgb]))
    )
    assert expected["num_detections"].min() > 0
    for key in OUTPUTS:
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5)


@pytest.mark.slow
def test_one_pixel_image(model, loaded):
    """A 1×1 image is one colour at the model's scale: its boxes overlap almost exactly, so
    float rounding decides NMS between near-identical boxes, and a graph whose convolutions
    round differently (the frozen one) may keep another of them. Both signatures are compared
    with the frozen detector they serve (the model's own equality: the other tests)."""
    image = random_image(1, 1, 6)
    from_uint8 = serve(loaded, "serving_default", images=tf.constant(image[None]))
    from_bytes = serve(loaded, "serving_bytes", encoded_images=tf.constant([png_bytes(image)]))
    frozen = {k: v.numpy() for k, v in freeze_for_inference(model)(image[None]).items()}
    assert frozen["num_detections"][0] > 0
    for served in (from_uint8, from_bytes):
        assert served["detection_boxes"].shape == (1, model.config.max_detections, 4)
        assert_same_detections(served, frozen, [(1, 1)], atol=1e-5)


@pytest.mark.slow
def test_huge_image_runs_at_the_model_scale(model, loaded):
    """4000×6000 → resized by the model to 192×288 (its min_side 192); boxes normalised."""
    image = random_image(4000, 6000, 8)
    assert (192, 288) == tuple(tf.image.resize(image, [192, 288]).shape[:2])
    small = tf.image.resize(tf.cast(image, tf.float32), [192, 288], antialias=True)[None]
    expected = serve(loaded, "predict_padded", images=small, image_sizes=tf.constant([[192, 288]]))
    assert expected["num_detections"][0] > 0
    n = expected["num_detections"][0]
    scale = np.array([192, 288, 192, 288], np.float32)
    for served in (
        serve(loaded, "serving_default", images=tf.constant(image[None])),
        serve(loaded, "serving_bytes", encoded_images=tf.constant([png_bytes(image)])),
    ):
        assert served["num_detections"][0] == n
        np.testing.assert_allclose(
            served["detection_boxes"][0, :n], expected["boxes"][0, :n] / scale, atol=1e-4
        )
        np.testing.assert_allclose(
            served["detection_scores"][0, :n], expected["confidence"][0, :n], atol=1e-5
        )
    # A JPEG is decoded at 1/8 (500×750, still above the model's 192×288), not at full size.
    jpeg = tf.io.encode_jpeg(image, quality=90)
    served = serve(loaded, "serving_bytes", encoded_images=tf.constant([jpeg.numpy()]))
    assert served["num_detections"][0] > 0
    assert np.all((served["detection_boxes"] >= 0) & (served["detection_boxes"] <= 1))


# ------------------------------------------------------------------------------ load_detector
@pytest.mark.slow
def test_load_detector_keras_file_and_saved_model(model, exported, tmp_path):
    images = pack_images([random_image(96, 128, 9), random_image(70, 100, 10)])
    predicted = model.predict(images, verbose=0)
    expected_boxes = xywh_to_yxyx(predicted["boxes"])
    assert predicted["num_detections"].min() > 0

    keras_path = str(tmp_path / "model.keras")
    model.save(keras_path)
    base = tmp_path / "versions"
    for version in ("2", "10"):  # 10 is the highest (numerically, not as text)
        shutil.copytree(exported, base / version)
    with open(base / "10" / "assets.extra" / "labels.txt", "w") as f:
        f.write("a\nb\nc\nd\n")

    for path, names in ((keras_path, NAMES), (exported, NAMES), (str(base), list("abcd"))):
        detector, class_names = load_detector(path)
        assert class_names == names, path
        out = detector(images)
        np.testing.assert_array_equal(out["num_detections"], predicted["num_detections"])
        assert out["labels"].dtype == np.int32 and out["num_detections"].dtype == np.int32
        for b, n in enumerate(predicted["num_detections"]):
            np.testing.assert_allclose(out["boxes"][b, :n], expected_boxes[b, :n], atol=1e-3)
            np.testing.assert_allclose(out["confidence"][b, :n], predicted["confidence"][b, :n], atol=1e-5)
            np.testing.assert_array_equal(out["labels"][b], predicted["labels"][b])
    # A plain uint8 batch works too (true sizes = the batch's).
    single = detector(random_image(96, 128, 9)[None])
    assert int(single["num_detections"][0]) == predicted["num_detections"][0]


def test_load_detector_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_detector(tmp_path / "missing")
    (tmp_path / "empty" / "3").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError, match="neither an export \\(saved_model.pb, model.tflite or model.onnx\\)"
    ):
        load_detector(tmp_path / "empty")
    (tmp_path / "model.h5").write_text("x")
    with pytest.raises(ValueError, match="expected a .keras file"):
        load_detector(tmp_path / "model.h5")
