"""Bad detections / ground truth / options give errors that say what was expected."""

import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.evaluation import evaluate_detections


def good():
    detections = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}]
    ground_truth = [{"boxes": [[0, 0, 10, 10]], "labels": [1], "difficult": [False]}]
    return detections, ground_truth


def test_good_input_is_accepted():
    detections, ground_truth = good()
    assert evaluate_detections(detections, ground_truth, num_classes=2)["mAP"] == 1.0


def test_accepts_tensors_and_float_labels():
    detections = [
        {
            "boxes": tf.constant([[0.0, 0, 10, 10]]),
            "scores": tf.constant([0.9]),
            "labels": np.array([1.0]),
        }
    ]
    ground_truth = [{"boxes": tf.constant([[0.0, 0, 10, 10]]), "labels": tf.constant([1])}]
    assert evaluate_detections(detections, ground_truth, num_classes=2)["mAP"] == 1.0


BAD_VALUES = {
    "box with 3 numbers": (
        lambda d, g: d[0].update(boxes=[[0, 0, 10]]),
        r"detections\[0\]\['boxes'\] has shape \(1, 3\); expected \[N, 4\]",
    ),
    "flat boxes": (
        lambda d, g: g[0].update(boxes=[0, 0, 10, 10]),
        r"ground_truth\[0\]\['boxes'\] has shape \(4,\)",
    ),
    "too many scores": (
        lambda d, g: d[0].update(scores=[0.9, 0.8]),
        r"detections\[0\]\['scores'\] has shape \(2,\); expected \[1\]",
    ),
    "too many labels": (
        lambda d, g: g[0].update(labels=[1, 1]),
        r"ground_truth\[0\]\['labels'\] has shape \(2,\); expected \[1\]",
    ),
    "too many difficult": (
        lambda d, g: g[0].update(difficult=[True, False]),
        r"\['difficult'\] has shape \(2,\)",
    ),
    "label too large": (
        lambda d, g: d[0].update(labels=[2]),
        r"detections\[0\]\['labels'\] has 2; expected class ids in 0\.\.1",
    ),
    "negative label": (
        lambda d, g: g[0].update(labels=[-1]),
        r"ground_truth\[0\]\['labels'\] has -1; expected class ids in 0\.\.1",
    ),
    "fractional label": (
        lambda d, g: d[0].update(labels=[0.5]),
        r"must hold integer class ids",
    ),
    "inverted box": (
        lambda d, g: d[0].update(boxes=[[10, 0, 0, 10]]),
        r"ymax < ymin or xmax < xmin; expected \[ymin, xmin, ymax, xmax\]",
    ),
    "NaN score": (
        lambda d, g: d[0].update(scores=[np.nan]),
        r"detections\[0\]\['scores'\] has NaN",
    ),
    "infinite box": (
        lambda d, g: g[0].update(boxes=[[0, 0, np.inf, 10]]),
        r"ground_truth\[0\]\['boxes'\] has NaN or infinite",
    ),
    "difficult not boolean": (
        lambda d, g: g[0].update(difficult=[2]),
        r"\['difficult'\] must be booleans",
    ),
    "missing scores": (
        lambda d, g: d[0].pop("scores"),
        r"detections\[0\] is missing \['scores'\]",
    ),
    "one more image of ground truth": (
        lambda d, g: g.append({"boxes": [], "labels": []}),
        r"detections has 1 images but ground_truth has 2",
    ),
}


@pytest.mark.parametrize("change, match", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values(change, match):
    detections, ground_truth = good()
    change(detections, ground_truth)
    with pytest.raises(ValueError, match=match):
        evaluate_detections(detections, ground_truth, num_classes=2)


def test_bad_containers():
    detections, ground_truth = good()
    with pytest.raises(TypeError, match="detections must be a list with one dict per image"):
        evaluate_detections(detections[0], ground_truth)
    with pytest.raises(TypeError, match=r"ground_truth\[0\] must be a dict"):
        evaluate_detections(detections, [np.zeros((1, 4))])


def test_bad_options():
    detections, ground_truth = good()
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate_detections(detections, ground_truth, metric="voc12")
    with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\]"):
        evaluate_detections(detections, ground_truth, iou_threshold=0.0)
    with pytest.raises(ValueError, match="class_names has 3 names but num_classes is 2"):
        evaluate_detections(detections, ground_truth, num_classes=2, class_names=["a", "b", "c"])
    with pytest.raises(TypeError, match="class_names must be a list of names"):
        evaluate_detections(detections, ground_truth, class_names="ab")
    with pytest.raises(ValueError, match="class_names has duplicates"):
        evaluate_detections(detections, ground_truth, class_names=["a", "a"])
    with pytest.raises(ValueError, match="num_classes must be a non-negative int"):
        evaluate_detections(detections, ground_truth, num_classes=1.5)
    with pytest.raises(ValueError, match="ground_truth is empty; expected at least one image"):
        evaluate_detections([], [], num_classes=2)
    with pytest.raises(ValueError, match="pass num_classes"):
        evaluate_detections([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [], "labels": []}])
