"""format_table and save_json."""

import json

from rfcn_tf.evaluation import evaluate_detections, format_table, save_json


def result_with_missing_class(metric="voc07"):
    # cat: one object found → AP 1; dog: no ground truth → NaN.
    detections = [{"boxes": [[0, 0, 40, 40]], "scores": [0.9], "labels": [0]}]
    ground_truth = [{"boxes": [[0, 0, 40, 40]], "labels": [0]}]
    return evaluate_detections(detections, ground_truth, metric=metric, class_names=["cat", "dog"])


def test_format_table_voc():
    lines = format_table(result_with_missing_class()).splitlines()
    assert lines[0] == "voc07 on 1 images, IoU >= 0.5"
    assert lines[1].split() == ["class", "AP", "GT", "detections"]
    assert lines[2].split() == ["cat", "1.0000", "1", "1"]
    assert lines[3].split() == ["dog", "n/a", "0", "0"]
    assert lines[-1].split() == ["mAP", "1.0000"]


def test_format_table_coco_adds_summary():
    lines = format_table(result_with_missing_class("coco")).splitlines()
    assert lines[0] == "coco on 1 images"
    assert ["AP50", "1.0000"] in [line.split() for line in lines]
    assert ["AP_small", "n/a"] in [line.split() for line in lines]  # 40×40 is medium


def test_save_json_is_strict_json(tmp_path):
    result = evaluate_detections(
        [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}],
        [{"boxes": [[0, 0, 10, 10]], "labels": [0]}],
        num_classes=2,
    )
    path = tmp_path / "nested" / "eval.json"
    assert save_json(result, str(path)) == str(path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded["per_class"] == {"0": 1.0, "1": None}
    assert loaded["classes_without_ground_truth"] == [1]
    assert loaded["mAP"] == 1.0
