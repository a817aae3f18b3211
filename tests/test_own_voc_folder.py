"""benchmarks/own_voc_folder.py: the user-like VOC folder loads through the package's reader."""

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from rfcn_tf.data import load_examples
from tests.model_helpers import benchmark_module

own_voc = benchmark_module("own_voc_folder")

# 20 train images: one full block of file formats (7 JPEG, 2 PNG, 1 gray) and one full
# block for the empty image, so both are present whatever the seed.
SIZES = dict(num_train=20, num_val=4, num_test=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(own_voc.make_voc_folder(str(tmp_path_factory.mktemp("own_voc")), seed=0, **SIZES))


def _read_all(root):
    return {
        os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(root)
        for f in files
    }


def _xml(root, image_id):
    return ET.parse(os.path.join(root, "Annotations", image_id + ".xml")).getroot()


def test_layout_and_split_files(folder):
    for split, count in zip(own_voc.SPLITS, SIZES.values()):
        with open(os.path.join(folder, "ImageSets", "Main", split + ".txt")) as f:
            ids = f.read().split()
        assert ids == [f"{split}_{i:05d}" for i in range(count)]
    assert len(os.listdir(os.path.join(folder, "Annotations"))) == sum(SIZES.values())
    assert len(os.listdir(os.path.join(folder, "JPEGImages"))) == sum(SIZES.values())


def test_file_formats_match_their_names(folder):
    modes = {}
    for name in os.listdir(os.path.join(folder, "JPEGImages")):
        with Image.open(os.path.join(folder, "JPEGImages", name)) as image:
            assert image.format == {".jpg": "JPEG", ".png": "PNG"}[os.path.splitext(name)[1]]
            modes[name] = (image.format, image.mode)
            xml = _xml(folder, os.path.splitext(name)[0])
            assert xml.findtext("filename") == name
            assert (int(xml.findtext("size/width")), int(xml.findtext("size/height"))) == image.size
    kinds = list(modes.values())
    assert ("PNG", "RGB") in kinds
    assert ("JPEG", "L") in kinds
    assert kinds.count(("JPEG", "RGB")) > len(kinds) // 2


def test_loads_with_mixed_sizes_boxes_inside_and_difficult(folder):
    dataset, class_names = load_examples(folder, "train")
    assert class_names == sorted(own_voc.CLASS_NAMES) == ["crescent", "cross", "hexagon"]
    examples = list(dataset.as_numpy_iterator())
    assert len(examples) == SIZES["num_train"]
    shapes = {ex["image"].shape for ex in examples}
    assert all(s[2] == 3 for s in shapes)  # grayscale files come out RGB
    assert len(shapes) > 1 and any(h != w for h, w, _ in shapes)
    assert all(own_voc.MIN_SIDE <= side <= own_voc.MAX_SIDE for s in shapes for side in s[:2])
    assert any(len(ex["boxes"]) == 0 for ex in examples)  # the image without objects
    for ex in examples:
        h, w = ex["image"].shape[:2]
        boxes = ex["boxes"]
        assert len(boxes) == len(ex["labels"]) == len(ex["difficult"]) <= 4
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= h) and np.all(boxes[:, 3] <= w)
        assert np.all(boxes[:, 2:] > boxes[:, :2])
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert own_voc._iou(boxes[a], boxes[b]) <= own_voc.MAX_IOU + 1e-6
    labels = np.concatenate([ex["labels"] for ex in examples])
    assert set(labels.tolist()) == {0, 1, 2}
    # Difficult flags are rare (~5 %): look for them over every split.
    difficult = [
        obj.findtext("difficult")
        for name in os.listdir(os.path.join(folder, "Annotations"))
        for obj in _xml(folder, name[:-4]).findall("object")
    ]
    assert "1" in difficult and difficult.count("1") < len(difficult) // 4
    loaded = sum(int(ex["difficult"].sum()) for ex in examples)
    assert loaded == sum(
        d == "1"
        for name in os.listdir(os.path.join(folder, "Annotations"))
        if name.startswith("train")
        for d in [obj.findtext("difficult") for obj in _xml(folder, name[:-4]).findall("object")]
    )


def test_xml_boxes_round_trip_to_the_generator_boxes(folder):
    # The generator's edge-convention boxes → VOC 1-based inclusive → the reader's boxes.
    dataset, class_names = load_examples(folder, "val")
    for i, ex in enumerate(dataset.as_numpy_iterator()):
        assert ex["image_id"].decode() == f"val_{i:05d}"
        _, _, _, objects = own_voc.make_example(0, 1, i)
        np.testing.assert_array_equal(
            ex["boxes"], np.array([o["box"] for o in objects], np.float32).reshape(-1, 4)
        )
        assert [class_names[k] for k in ex["labels"]] == [o["name"] for o in objects]
        assert ex["difficult"].tolist() == [o["difficult"] for o in objects]
        for obj in _xml(folder, f"val_{i:05d}").findall("object"):
            width, height = int(_xml(folder, f"val_{i:05d}").findtext("size/width")), ex["image"].shape[0]
            assert 1 <= int(obj.findtext("bndbox/xmin")) <= int(obj.findtext("bndbox/xmax")) <= width
            assert 1 <= int(obj.findtext("bndbox/ymin")) <= int(obj.findtext("bndbox/ymax")) <= height


def test_same_seed_same_bytes_and_sizes_do_not_change_earlier_images(folder, tmp_path):
    again = own_voc.make_voc_folder(str(tmp_path / "again"), seed=0, **SIZES)
    assert _read_all(again) == _read_all(folder)
    smaller = own_voc.make_voc_folder(str(tmp_path / "smaller"), seed=0, num_train=3, num_val=1, num_test=0)
    first = _read_all(folder)
    for name, data in _read_all(smaller).items():
        if not name.startswith("ImageSets"):
            assert first[name] == data
    other = own_voc.make_voc_folder(str(tmp_path / "other"), seed=1, num_train=3, num_val=0, num_test=0)
    assert _read_all(other)["Annotations/train_00000.xml"] != first["Annotations/train_00000.xml"]


def test_regenerating_smaller_removes_stale_files(tmp_path):
    root = str(tmp_path / "voc")
    own_voc.make_voc_folder(root, num_train=3, num_val=1, num_test=1)
    own_voc.make_voc_folder(root, num_train=2, num_val=0, num_test=1)
    assert sorted(os.listdir(os.path.join(root, "Annotations"))) == [
        "test_00000.xml",
        "train_00000.xml",
        "train_00001.xml",
    ]
    dataset, _ = load_examples(root, None)  # every XML: nothing stale left to read
    assert len(list(dataset)) == 3


def test_parse_val_map_from_progress_bar_output():
    output = (
        "Epoch 1/3\n\x1b[1m 1/50\x1b[0m ━━ - loss: 2.1\b\b\r\x1b[1m50/50\x1b[0m ━━ 3s/step - loss: 1.2"
        " - val_AP/cross: 0.1000 - val_mAP: 0.0500\n"
        "Epoch 2/3\n\x1b[1m50/50\x1b[0m - loss: 1.0 - val_mAP: 2.0000e-04 - val_AP/hexagon: 0.2\n"
        "Epoch 3/3\n\x1b[1m50/50\x1b[0m - loss: 0.9 - val_mAP: nan\nsaved runs/final.keras\n"
    )
    values = own_voc.parse_val_map(output)
    assert values[1] == pytest.approx(0.05) and values[2] == pytest.approx(2e-4) and np.isnan(values[3])
    table = own_voc.format_results(
        [{"seed": 0, "val_mAP": values, "test_mAP": 0.5, "train_minutes": 1.25, "eval_minutes": 0.1}]
    )
    assert "val_mAP e3" in table and "0.500" in table
