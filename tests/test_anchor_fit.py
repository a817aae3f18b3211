"""rfcn_tf.anchor_fit: centred-IoU recall against a brute-force reference, the fit against
a mismatched default, box shapes at the model's scale, and ``rfcn-tf train --anchors``."""

import argparse
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rfcn_tf.anchor_fit import (
    LOW_RECALL,
    anchor_recall,
    anchor_shapes,
    centred_iou,
    fit_anchors,
    report_anchors,
    training_box_shapes,
)
from rfcn_tf.anchors import base_anchors
from rfcn_tf.cli import main
from rfcn_tf.commands.train import _check_anchors
from rfcn_tf.config import RFCNConfig
from rfcn_tf.data import load_examples

PAPER = ((128.0, 256.0, 512.0), (0.5, 1.0, 2.0))  # RFCNConfig's default anchors


def reference_recall(boxes_hw, scales, ratios, threshold=0.5):
    """Brute force from the definitions: each box and each anchor (area scale², h/w = ratio)
    as corner boxes centred on the origin, IoU = intersection / union of the rectangles."""
    hits = 0
    for h, w in boxes_hw:
        box = (-h / 2, -w / 2, h / 2, w / 2)
        best = 0.0
        for scale, ratio in itertools.product(scales, ratios):
            ah, aw = scale * np.sqrt(ratio), scale / np.sqrt(ratio)
            anchor = (-ah / 2, -aw / 2, ah / 2, aw / 2)
            ih = max(0.0, min(box[2], anchor[2]) - max(box[0], anchor[0]))
            iw = max(0.0, min(box[3], anchor[3]) - max(box[1], anchor[1]))
            inter = ih * iw
            best = max(best, inter / (h * w + ah * aw - inter))
        hits += best >= threshold
    return hits / len(boxes_hw)


def lognormal_boxes(n, median, seed=0):
    """Boxes of median side ``median`` (log-sd 0.6 of the side, 0.3 of h/w): aerial-like."""
    rng = np.random.default_rng(seed)
    side = np.exp(rng.normal(np.log(median), 0.6, n))
    ratio = np.exp(rng.normal(0.0, 0.3, n))
    return np.stack([side * np.sqrt(ratio), side / np.sqrt(ratio)], axis=-1)


def test_anchor_shapes_are_those_of_base_anchors():
    scales, ratios = (12.0, 30.0), (0.4, 1.0, 2.5)
    base = base_anchors(scales, ratios)
    np.testing.assert_allclose(
        anchor_shapes(scales, ratios),
        np.stack([base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]], -1),
        rtol=1e-6,
    )


def test_recall_matches_the_brute_force_reference():
    rng = np.random.default_rng(3)
    boxes = rng.uniform(2.0, 150.0, (300, 2))
    for scales, ratios in [
        ((16.0, 32.0, 64.0, 128.0), (0.5, 1.0, 2.0)),
        ((40.0,), (1.0,)),
        ((9.0, 70.0), (0.3, 3.0)),
    ]:
        assert anchor_recall(boxes, scales, ratios) == pytest.approx(
            reference_recall(boxes, scales, ratios), abs=1e-12
        )
        assert anchor_recall(boxes, scales, ratios, 0.7) == pytest.approx(
            reference_recall(boxes, scales, ratios, 0.7), abs=1e-12
        )


def test_centred_iou_edge_cases():
    # The anchor itself: 1; a box holding the 10 × 10 anchor twice: exactly 0.5, which counts.
    iou = centred_iou([[10.0, 10.0], [20.0, 10.0], [10.0, 30.0]], anchor_shapes([10.0], [1.0]))
    np.testing.assert_array_equal(iou[:, 0], [1.0, 0.5, 1 / 3])
    assert anchor_recall([[20.0, 10.0], [10.0, 30.0]], [10.0], [1.0]) == 0.5


def test_fitted_anchors_beat_a_mismatched_default():
    boxes = lognormal_boxes(5000, median=30.0)
    scales, ratios = fit_anchors(boxes, num_scales=4, num_ratios=3)
    assert len(scales) == 4 and len(ratios) == 3
    assert list(scales) == sorted(scales) and list(ratios) == sorted(ratios)
    default = anchor_recall(boxes, *PAPER)
    fitted = anchor_recall(boxes, scales, ratios)
    assert default < 0.1  # 128 px anchors for ~30 px boxes
    assert fitted > 0.95
    # The search only improves on where it starts, the quantile rule.
    mids4, mids = (2 * np.arange(4) + 1) / 8, (2 * np.arange(3) + 1) / 6
    side, ratio = np.sqrt(boxes.prod(axis=1)), boxes[:, 0] / boxes[:, 1]
    assert fitted >= anchor_recall(boxes, np.quantile(side, mids4), np.quantile(ratio, mids)) - 0.005
    assert fit_anchors(boxes, num_scales=4, num_ratios=3) == (scales, ratios)  # deterministic


def test_fit_finds_elongated_shapes():
    rng = np.random.default_rng(1)
    height = rng.uniform(40.0, 60.0, 400)
    boxes = np.concatenate(
        [
            np.stack([height, height / 6], -1),  # tall (h/w 6)
            np.stack([height / 6, height], -1),
        ]
    )  # and wide (h/w 1/6)
    scales, ratios = fit_anchors(boxes, num_scales=2, num_ratios=3)
    assert anchor_recall(boxes, scales, ratios) == 1.0
    assert anchor_recall(boxes, (16.0, 32.0), (0.5, 1.0, 2.0)) < 0.5
    assert ratios[0] < 0.25 and ratios[-1] > 4.0


def test_fit_rejects_empty_and_degenerate_boxes():
    with pytest.raises(ValueError, match="no boxes"):
        fit_anchors(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="boxes_hw"):
        fit_anchors([[10.0, 0.0]])


def _examples(images):
    """Common examples from ``[(height, width, boxes)]``."""

    def gen():
        for h, w, boxes in images:
            yield {
                "image": np.zeros((h, w, 3), np.uint8),
                "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            }

    return tf.data.Dataset.from_generator(
        gen,
        output_signature={
            "image": tf.TensorSpec([None, None, 3], tf.uint8),
            "boxes": tf.TensorSpec([None, 4], tf.float32),
        },
    )


def test_box_shapes_follow_the_models_resize_rule():
    images = [
        (300, 500, [[10, 20, 40, 80], [0, 0, 300, 500]]),
        (1000, 200, [[100, 50, 160, 70]]),
        (64, 64, []),
    ]
    got = training_box_shapes(_examples(images), (150, 200), 400)
    expected = []
    for side in (150, 200):  # the rule, by hand: shorter side → side unless longer > 400
        for h, w, boxes in images:
            scale = min(side / min(h, w), 400 / max(h, w))
            new_h, new_w = round(h * scale), round(w * scale)
            for y0, x0, y1, x1 in boxes:
                expected.append([(y1 - y0) * new_h / h, (x1 - x0) * new_w / w])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert len(training_box_shapes(_examples(images), 150, 400, max_images=1)) == 2


def test_report_warns_on_low_recall_and_on_boxes_under_one_cell():
    boxes = lognormal_boxes(500, median=30.0)
    config = RFCNConfig(num_classes=1)  # the paper's 128–512 px anchors, stride 16
    report = report_anchors(boxes, config)
    info, warnings = report.lines()
    assert report.given_recall < LOW_RECALL and report.fitted is None
    assert any("below 0.9" in w and "--anchors auto" in w for w in warnings)
    assert "default anchors scales [128.0, 256.0, 512.0]" in info[1]

    report = report_anchors(boxes, config, fit=True)
    assert report.fitted_recall > LOW_RECALL and report.recall == report.fitted_recall
    assert len(report.fitted[0]) == 3 and len(report.fitted[1]) == 3  # as many as the config's
    assert report.lines()[1] == []

    tiny = report_anchors(lognormal_boxes(500, median=6.0), config, fit=True)
    assert any("less than one feature cell (16 px)" in w for w in tiny.lines()[1])


# ------------------------------------------------------------------------------ CLI
def thin_voc_folder(root):
    """A VOC folder of 128 × 128 images holding 'rail' objects 6–9 px tall, 50–70 px wide."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    rng = np.random.default_rng(0)
    shapes = []
    for i in range(4):
        image = rng.integers(0, 60, (128, 128, 3), dtype=np.uint8)
        objects = []
        for k in range(2):
            h, w = int(rng.integers(6, 10)), int(rng.integers(50, 71))
            y0, x0 = 20 + 60 * k, int(rng.integers(0, 128 - w))
            image[y0 : y0 + h, x0 : x0 + w] = (230, 200, 40)
            shapes.append((h, w))
            objects.append(
                f"<object><name>rail</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}"
                f"</ymin><xmax>{x0 + w}</xmax><ymax>{y0 + h}</ymax></bndbox></object>"
            )
        Image.fromarray(image).save(root / "JPEGImages" / f"r{i}.png")
        (root / "Annotations" / f"r{i}.xml").write_text(
            f"<annotation><filename>r{i}.png</filename><size><width>128</width><height>128</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>"
        )
    return root, np.array(shapes, np.float64)


@pytest.mark.slow
def test_train_anchors_auto_writes_the_fitted_anchors_into_the_model(tmp_path, capsys):
    voc, shapes = thin_voc_folder(tmp_path / "voc")
    status = main(
        [
            "train",
            "--small",
            "--dataset",
            str(voc),
            "--split",
            "all",
            "--min-side",
            "128",
            "--max-side",
            "128",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--anchors",
            "auto",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert status == 0
    out, err = capsys.readouterr()
    # The images are at the model's scale already: the boxes are fitted as drawn.
    expected = fit_anchors(shapes, num_scales=4, num_ratios=3)
    config = keras.models.load_model(tmp_path / "out" / "final.keras").config
    assert (config.anchor_scales, config.anchor_ratios) == expected
    assert config.anchor_scales != RFCNConfig.small().anchor_scales
    default = anchor_recall(shapes, RFCNConfig.small().anchor_scales, RFCNConfig.small().anchor_ratios)
    assert (
        f"default anchors scales [16.0, 32.0, 64.0, 128.0] × ratios [0.5, 1.0, 2.0]: recall {default:.3f}"
        in out
    )
    assert f"auto anchors scales {list(expected[0])} × ratios {list(expected[1])}: recall 1.000" in out
    assert "warning: anchor recall" not in err


@pytest.mark.slow
def test_train_anchors_default_warns_when_recall_is_low(tmp_path, capsys):
    voc, shapes = thin_voc_folder(tmp_path / "voc")
    args = argparse.Namespace(anchors="default", seed=0)
    config = RFCNConfig.small(num_classes=1, min_side=128, max_side=128)
    examples, _ = load_examples(str(voc))
    assert _check_anchors(args, config, examples) == {}
    out, err = capsys.readouterr()
    recall = anchor_recall(shapes, config.anchor_scales, config.anchor_ratios)
    assert recall < LOW_RECALL
    assert f"warning: anchor recall {recall:.3f} is below {LOW_RECALL}" in err and "--anchors auto" in err
    assert "8 training boxes at the model's scale" in out


def test_init_with_other_anchors_keeps_the_weights(tmp_path):
    """``--init`` with ``--anchors auto``: the fitted anchors (as many as the model's) replace
    the model's and every weight carries over."""
    from rfcn_tf.commands.train import _build_model
    from rfcn_tf.model import RFCN

    source = RFCN(config=RFCNConfig.small(num_classes=1, class_names=("rail",), min_side=64, max_side=64))
    source.save(tmp_path / "init.keras")
    args = argparse.Namespace(
        init=str(tmp_path / "init.keras"),
        freeze_stages=None,
        max_detections=None,
        proposals=None,
        score_threshold=None,
        input_normalization=None,
    )
    fitted = {"anchor_scales": (5.0, 9.0, 20.0, 40.0), "anchor_ratios": (0.2, 1.0, 5.0)}
    seen = []

    def anchors(config):
        seen.append(config)
        return fitted

    model, config = _build_model(args, ["rail"], {}, anchors)
    assert seen[0].anchor_scales == source.config.anchor_scales  # asked with the model's config
    assert (config.anchor_scales, config.anchor_ratios) == (fitted["anchor_scales"], fitted["anchor_ratios"])
    assert len(model.weights) == len(source.weights)
    for new, old in zip(model.weights, source.weights):
        np.testing.assert_array_equal(new.numpy(), old.numpy())
