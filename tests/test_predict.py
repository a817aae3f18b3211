"""predict_files: JSON and pictures, unreadable files reported, and the command-line scripts."""

import json
import logging
import os
import runpy
import sys

import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.predict import predict_files
from tests.model_helpers import random_image, sharpen, write_png

NAMES = ["circle", "square", "triangle", "star"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    m = RFCN(config=RFCNConfig.small(num_classes=4, class_names=NAMES))
    sharpen(m, seed=3)
    return m


@pytest.fixture
def folder(tmp_path):
    """Two readable images sharing the stem "a" (PNG and JPEG), two broken files, a text file.
    Returns (folder, {file name: decoded RGB array})."""
    root = tmp_path / "images"
    root.mkdir()
    png = random_image(96, 128, 11)
    write_png(root / "a.png", png)
    tf.io.write_file(str(root / "a.jpg"), tf.io.encode_jpeg(random_image(80, 112, 12)))
    jpg = tf.io.decode_jpeg(tf.io.read_file(str(root / "a.jpg"))).numpy()
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not an input")
    return root, {"a.png": png, "a.jpg": jpg}


@pytest.mark.slow
def test_folder_json_pictures_and_errors(model, folder, tmp_path, caplog):
    root, images = folder
    out_dir = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="rfcn_tf.predict"):
        results = predict_files(model, root, out_dir, score_threshold=0.3, batch_size=3)
    with open(out_dir / "detections.json") as f:
        assert json.load(f) == results
    assert [os.path.basename(r["file"]) for r in results] == ["a.jpg", "a.png", "corrupt.png", "empty.jpg"]

    for r in results[2:]:
        assert "error" in r and "detections" not in r
        assert os.path.basename(r["file"]) in caplog.text
    assert "not a PNG, JPEG, GIF, BMP or WebP image" in results[2]["error"] and "empty" in results[3]["error"]

    predicted = model.predict(pack_images([images["a.jpg"], images["a.png"]]), verbose=0)
    kept_total = dropped_total = 0
    for b, (r, output) in enumerate(zip(results[:2], ["a.png", "a_2.png"])):
        image = images[os.path.basename(r["file"])]
        assert (r["height"], r["width"]) == image.shape[:2] and r["output"] == output
        n = predicted["num_detections"][b]
        scores = predicted["confidence"][b, :n]
        keep = scores >= 0.3
        kept_total += keep.sum()
        dropped_total += (~keep).sum()
        assert len(r["detections"]) == keep.sum()
        for d, box, score, label in zip(
            r["detections"], predicted["boxes"][b, :n][keep], scores[keep], predicted["labels"][b, :n][keep]
        ):
            np.testing.assert_allclose(d["box"], box, atol=1e-2)
            assert d["score"] == pytest.approx(float(score), abs=1e-5)
            assert d["label"] == label and d["label_name"] == NAMES[label]
        picture = tf.io.decode_png(tf.io.read_file(str(out_dir / output))).numpy()
        assert picture.shape == image.shape
        assert np.any(picture != image) == bool(keep.any())  # boxes drawn where detections are
    assert kept_total > 0 and dropped_total > 0  # the threshold mattered


def test_bad_arguments(model, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predict_files(model, [tmp_path / "missing.png"], tmp_path / "out")
    with pytest.raises(ValueError, match="no image files"):
        predict_files(model, tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="2 class names given for a model with 4 classes"):
        predict_files(model, tmp_path, tmp_path / "out", class_names=["x", "y"])
    with pytest.raises(TypeError, match="RFCN model or a model path"):
        predict_files(object(), tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="no input images"):
        predict_files(model, [], tmp_path / "out")


def run_script(monkeypatch, name, *args):
    """``python scripts/<name>.py args`` in this process → its exit code."""
    monkeypatch.setattr(sys, "argv", [f"scripts/{name}.py", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(os.path.join(ROOT, "scripts", f"{name}.py"), run_name="__main__")
    return exit_info.value.code


@pytest.mark.slow
def test_scripts_export_then_predict(model, folder, tmp_path, monkeypatch):
    """scripts/export.py writes a version; scripts/predict.py on it (and on the .keras file)
    gives the same detections, renamed classes, and exit code 1 for the unreadable files."""
    root, _ = folder
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    assert (
        run_script(monkeypatch, "export", "--model", keras_path, "--export-dir", tmp_path / "saved" / "rfcn")
        == 0
    )
    version_dir = tmp_path / "saved" / "rfcn" / "1"
    assert (version_dir / "saved_model.pb").is_file()

    outputs = {}
    for source, model_path in (("keras", keras_path), ("saved_model", version_dir.parent)):
        out_dir = tmp_path / source
        code = run_script(
            monkeypatch,
            "predict",
            "--model",
            model_path,
            root / "a.png",
            root / "corrupt.png",
            "--output-dir",
            out_dir,
            "--score-threshold",
            "0.2",
            "--class-names",
            "w,x,y,z",
        )
        assert code == 1  # corrupt.png could not be read
        with open(out_dir / "detections.json") as f:
            outputs[source] = json.load(f)
        assert "error" in outputs[source][1]
    first, second = (o[0]["detections"] for o in outputs.values())
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        np.testing.assert_allclose(a["box"], b["box"], atol=1e-2)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5) and a["score"] >= 0.2
        assert a["label"] == b["label"] and a["label_name"] == "wxyz"[a["label"]]
