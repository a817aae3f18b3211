"""Test-time settings (``max_detections``, ``proposals``, ``score_threshold``; the scale):
``with_decoding``, exports carrying them, loaded exports refusing what they cannot change,
the cap warning, and the flags of train, evaluate (also with --tile), predict and export."""

import json
import logging

import keras
import numpy as np
import pytest

from rfcn_tf import RFCN, RFCNConfig, with_decoding
from rfcn_tf.cli import build_parser, main
from rfcn_tf.decoding import decoding_changes
from rfcn_tf.loading import keras_detector, load_detector
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen, write_png
from tests.test_cli import write_voc_folder

NAMES = ["cat", "dog"]  # write_voc_folder's classes


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    m = RFCN(config=RFCNConfig.small(num_classes=2, class_names=NAMES))
    sharpen(m, seed=4)
    return m


@pytest.fixture(scope="module")
def keras_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return write_voc_folder(tmp_path_factory.mktemp("voc") / "VOC")


@pytest.fixture(scope="module")
def exported(keras_path, tmp_path_factory):
    """``rfcn-tf export --max-detections 7 --proposals 150 --score-threshold 0.1`` → the
    version directory."""
    base = tmp_path_factory.mktemp("export") / "rfcn"
    assert (
        main(
            [
                "export",
                "--model",
                str(keras_path),
                "--export-dir",
                str(base),
                "--max-detections",
                "7",
                "--proposals",
                "150",
                "--score-threshold",
                "0.1",
            ]
        )
        == 0
    )
    return base / "1"


def detections(model, images):
    return {k: np.asarray(v) for k, v in model.predict(images, verbose=0).items()}


# ------------------------------------------------------------------------------ the API
@pytest.mark.slow
def test_with_decoding_keeps_the_weights_and_caps_the_detections(model, tmp_path):
    images = np.stack([random_image(150, 200, s) for s in range(2)])
    before = detections(model, images)
    assert before["num_detections"].min() == 100  # the default cap, reached
    fewer = with_decoding(model, max_detections=5)
    assert fewer.config.max_detections == 5 and model.config.max_detections == 100
    for a, b in zip(fewer.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    out = detections(fewer, images)
    assert out["boxes"].shape == (2, 5, 4)  # the best 5 of the same detections
    np.testing.assert_allclose(out["boxes"], before["boxes"][:, :5], atol=1e-4)
    np.testing.assert_allclose(out["confidence"], before["confidence"][:, :5], atol=1e-6)
    # More room: more detections, the first 100 unchanged.
    more = detections(with_decoding(model, max_detections=250, proposals=400), images)
    assert more["num_detections"].min() > 100
    assert with_decoding(model, max_detections=100) is model  # nothing to change
    fewer.save(tmp_path / "fewer.keras")
    assert keras.models.load_model(tmp_path / "fewer.keras").config.max_detections == 5


def test_proposals_raise_the_pre_nms_count_when_needed():
    config = RFCNConfig.small()  # 1000 pre-NMS, 100 post-NMS at test time
    assert decoding_changes(config, proposals=500) == {"rpn_post_nms_test": 500}
    assert decoding_changes(config, proposals=2000) == {"rpn_post_nms_test": 2000, "rpn_pre_nms_test": 2000}
    assert decoding_changes(config, max_detections=100, score_threshold=0.05) == {}
    # The scale: in RFCNConfig's own form (one min_side an int), only what differs.
    assert decoding_changes(config, min_side=(400,), max_side=320) == {"min_side": 400}
    assert decoding_changes(config, min_side=[192, 256]) == {"min_side": (192, 256)}
    assert decoding_changes(config, min_side=(192,), max_side=320) == {}
    for kwargs, flag in (
        ({"max_detections": 0}, "--max-detections"),
        ({"proposals": 2.5}, "--proposals"),
        ({"score_threshold": 1.0}, "--score-threshold"),
        ({"min_side": (0,)}, "--min-side"),
        ({"min_side": ()}, "--min-side"),
        ({"max_side": 12.5}, "--max-side"),
    ):
        with pytest.raises(ValueError, match=f"^{list(kwargs)[0]} \\({flag}\\)"):
            decoding_changes(config, **kwargs)


def test_a_higher_score_threshold_filters_like_decoding_at_it(model):
    images = np.stack([random_image(150, 200, s) for s in range(2)])
    filtered, _ = keras_detector(model, score_threshold=0.4)  # no rebuild: a filter
    assert filtered.config.score_threshold == 0.4
    rebuilt = detections(with_decoding(model, score_threshold=0.4), images)
    out = filtered(images)
    np.testing.assert_array_equal(out["num_detections"], rebuilt["num_detections"])
    assert 0 < rebuilt["num_detections"].min() < 100
    for b, n in enumerate(rebuilt["num_detections"]):
        np.testing.assert_allclose(out["boxes"][b, :n], rebuilt["boxes"][b, :n], atol=1e-4)
        np.testing.assert_allclose(out["confidence"][b, :n], rebuilt["confidence"][b, :n], atol=1e-6)
        assert np.all(out["labels"][b, n:] == -1) and np.all(out["confidence"][b, n:] == 0)


# ------------------------------------------------------------------------------ exports
@pytest.mark.slow
def test_the_export_carries_the_settings(model, exported):
    config = json.loads((exported / "assets.extra" / "rfcn_config.json").read_text())
    assert (config["max_detections"], config["rpn_post_nms_test"], config["score_threshold"]) == (7, 150, 0.1)
    detector, _ = load_detector(exported)
    images = np.stack([random_image(150, 200, s) for s in range(2)])
    out = detector(images)
    assert out["boxes"].shape == (2, 7, 4)
    expected = detections(with_decoding(model, max_detections=7, proposals=150, score_threshold=0.1), images)
    assert_same_detections_any_order(out, expected, box_atol=0.05)


@pytest.mark.slow
def test_a_loaded_export_refuses_settings_it_cannot_change(model, exported):
    for kwargs, message in (
        ({"max_detections": 50}, "--max-detections: the export at .* max_detections=7"),
        ({"proposals": 300}, "--proposals: .*rpn_post_nms_test=150"),
        ({"score_threshold": 0.05}, "--score-threshold: .*score_threshold=0.1"),
        ({"min_side": (400,)}, r"--min-side: the export at .* runs at min_side=192, max_side=320"),
        ({"max_side": 640}, "--max-side: the export at .* give the .keras model to run at another scale"),
    ):
        with pytest.raises(ValueError, match=message):
            load_detector(exported, **kwargs)
    detector, _ = load_detector(exported, max_detections=7, score_threshold=0.4)
    images = random_image(150, 200, 3)[None]
    expected = detections(with_decoding(model, max_detections=7, proposals=150, score_threshold=0.4), images)
    assert_same_detections_any_order(detector(images), expected, box_atol=0.05)


# ------------------------------------------------------------------------------ commands
def test_train_builds_the_model_with_the_settings(keras_path, voc):
    from rfcn_tf.commands.train import _build_model

    flags = ["--max-detections", "300", "--proposals", "2000", "--score-threshold", "0.2"]
    args = build_parser().parse_args(["train", "--small", "--dataset", str(voc), *flags])
    _, config = _build_model(args, NAMES, {}, lambda config: {})
    assert (
        config.max_detections,
        config.rpn_post_nms_test,
        config.rpn_pre_nms_test,
        config.score_threshold,
    ) == (300, 2000, 2000, 0.2)
    args = build_parser().parse_args(["train", "--init", str(keras_path), "--dataset", str(voc), *flags])
    model, config = _build_model(args, NAMES, {}, lambda config: {})  # --init: rebuilt, the weights kept
    assert (config.max_detections, config.rpn_post_nms_test) == (300, 2000)
    source = keras.models.load_model(keras_path)
    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_predict_caps_and_warns_naming_the_flag(keras_path, tmp_path, caplog):
    path = write_png(tmp_path / "dense.png", random_image(150, 200, 1))
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                [
                    "predict",
                    "--model",
                    str(keras_path),
                    path,
                    "--output-dir",
                    str(tmp_path / "out"),
                    "--max-detections",
                    "2",
                ]
            )
            == 0
        )
    assert len(json.load(open(tmp_path / "out" / "detections.json"))[0]["detections"]) == 2
    assert "dense.png: reached the cap of 2 detections" in caplog.text
    assert "--max-detections" in caplog.text


@pytest.mark.slow
def test_evaluate_caps_warns_and_refuses_for_an_export(keras_path, exported, voc, tmp_path, caplog, capsys):
    output = tmp_path / "result.json"
    common = ["--dataset", str(voc), "--split", "all", "--output", str(output)]
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", "--model", str(keras_path), *common, "--max-detections", "3"]) == 0
    result = json.load(open(output))
    assert sum(result["num_detections"].values()) == 4 * 3  # 4 images, capped at 3
    assert "4 of 4 images: reached the cap of 3 detections" in caplog.text
    assert main(["evaluate", "--model", str(exported), *common, "--max-detections", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rfcn-tf evaluate: error: --max-detections: the export")


@pytest.mark.slow
def test_evaluate_at_another_scale_runs_the_model_at_it(model, keras_path, voc, tmp_path):
    """``rfcn-tf evaluate --min-side --max-side`` of a .keras model = the evaluation of the
    same weights saved at that scale (before, only the batches were resized and the model
    resized them back to its own scale)."""
    rescaled = tmp_path / "rescaled.keras"
    with_decoding(model, min_side=128, max_side=160).save(rescaled)
    detector, _ = load_detector(keras_path, min_side=(128,), max_side=160)
    assert (detector.config.min_side, detector.config.max_side) == (128, 160)
    results = {}
    for name, path, extra in (
        ("flags", keras_path, ["--min-side", "128", "--max-side", "160"]),
        ("saved", rescaled, []),
        ("own", keras_path, []),
    ):
        output = tmp_path / f"{name}.json"
        common = ["--dataset", str(voc), "--split", "all", "--output", str(output)]
        assert main(["evaluate", "--model", str(path), *common, *extra]) == 0
        results[name] = json.load(open(output))
    assert results["flags"]["num_detections"] == results["saved"]["num_detections"]
    assert results["flags"]["mAP"] == pytest.approx(results["saved"]["mAP"], abs=1e-6)
    assert results["flags"]["num_detections"] != results["own"]["num_detections"]  # another scale


@pytest.mark.slow
def test_evaluate_with_tiles_as_large_as_the_images_gives_the_plain_result(keras_path, voc, tmp_path):
    """With one tile per image the detector resizes each image itself, as the plain
    evaluation's pipeline does ahead of it: the same detections, the same AP."""
    results = {}
    for name, extra in (("plain", []), ("tiled", ["--tile", "256", "--overlap", "0.1"])):
        output = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "evaluate",
                    "--model",
                    str(keras_path),
                    "--dataset",
                    str(voc),
                    "--split",
                    "all",
                    "--output",
                    str(output),
                    *extra,
                ]
            )
            == 0
        )
        results[name] = json.load(open(output))
    plain, tiled = results["plain"], results["tiled"]
    assert tiled["num_detections"] == plain["num_detections"]
    assert sum(plain["num_detections"].values()) > 0
    assert tiled["mAP"] == pytest.approx(plain["mAP"], abs=1e-4)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(keras_path),
                "--dataset",
                str(voc),
                "--split",
                "all",
                "--tile",
                "64",
                "--min-side",
                "100",
            ]
        )
        == 2
    )
