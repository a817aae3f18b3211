"""load_examples on TFDS (mock), VOC folders and COCO JSON; validation of bad input."""

import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rfcn_tf.data import dropped_boxes, load_examples, log_dropped_boxes, make_pipeline, validate_examples
from tests.data_helpers import example, examples_dataset, write_coco, write_voc


def _clean_reference(boxes, height, width):
    """Independent numpy version of the validation rule: sort, clip, keep positive area."""
    lo, hi = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    limit = np.array([height, width], np.float32)
    lo, hi = np.clip(lo, 0, limit), np.clip(hi, 0, limit)
    keep = np.all(hi - lo > 0, axis=1)
    return np.concatenate([lo, hi], axis=1)[keep], keep


@pytest.mark.parametrize(
    "name,flag", [("voc/2007", "is_difficult"), ("voc/2012", "is_difficult"), ("coco/2017", "is_crowd")]
)
def test_tfds_adapters_on_mock_data(name, flag):
    with tfds.testing.mock_data(num_examples=3):
        raw = list(tfds.as_numpy(tfds.load(name, split="train")))
        examples, class_names = load_examples(name, "train")
        converted = list(tfds.as_numpy(examples))
        batches = list(make_pipeline(examples, 2, min_side=64, max_side=100))
    assert len(class_names) == (80 if name.startswith("coco") else 20)
    if name.startswith("voc"):
        assert class_names[:3] == ["aeroplane", "bicycle", "bird"]
    assert len(converted) == len(raw) == 3
    inverted = 0
    for r, ex in zip(raw, converted):
        h, w = r["image"].shape[:2]
        objects = r["objects"]
        # mock_data draws each object feature with its own length: the shortest counts.
        n = min(len(objects["bbox"]), len(objects["label"]), len(objects[flag]))
        pixels = objects["bbox"][:n] * np.array([h, w, h, w], np.float32)
        inverted += int((pixels[:, 0] > pixels[:, 2]).sum())
        boxes, keep = _clean_reference(pixels, h, w)
        np.testing.assert_allclose(ex["boxes"], boxes, atol=1e-4)
        np.testing.assert_array_equal(ex["labels"], objects["label"][:n][keep])
        np.testing.assert_array_equal(ex["difficult"], objects[flag][:n][keep])
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (h, w, 3)
    assert inverted > 0  # the mock data did exercise the sorting
    assert sum(len(x["images"]) for x, _ in batches) == 3
    for inputs, targets in batches:
        sizes = inputs["image_sizes"].numpy()
        valid = targets["labels"].numpy() >= 0
        boxes = targets["boxes"].numpy()
        assert np.all(boxes[valid][:, 2] <= np.repeat(sizes[:, 0], valid.sum(1)) + 1e-3)
        assert np.all(boxes[valid][:, 3] <= np.repeat(sizes[:, 1], valid.sum(1)) + 1e-3)
        assert np.all(boxes[valid][:, :2] >= 0) and np.all(boxes[~valid] == -1)


def _voc_folder(root):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200
    gray = np.full((30, 50), 90, np.uint8)
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[...] = (5, 150, 250, 60)
    images = {
        "a": ("a.jpg", rgb, [("dog", (11, 6, 30, 20), False), ("cat", (1, 1, 60, 40), True)]),
        # inverted x, across the right edge, wholly outside (empty once clipped)
        "b": (
            "b.png",
            gray,
            [
                ("bird", (40, 5, 10, 25), False),
                ("dog", (30, 10, 80, 20), False),
                ("cat", (70, 5, 80, 9), False),
            ],
        ),
        "c": ("c.png", rgba, []),
    }
    return write_voc(str(root), images, splits={"train": ["a", "b"], "val": ["c"]})


@pytest.mark.slow
def test_voc_folder_reads_names_boxes_and_formats(tmp_path, caplog):
    root = _voc_folder(tmp_path / "voc")
    with caplog.at_level(logging.WARNING, logger="rfcn_tf.data"):
        examples, names = load_examples(root, "train")
    assert names == ["bird", "cat", "dog"]
    assert "1 empty boxes dropped" in caplog.text and "b" in caplog.text
    got = {ex["image_id"].decode(): ex for ex in tfds.as_numpy(examples)}
    assert sorted(got) == ["a", "b"]
    a, b = got["a"], got["b"]
    np.testing.assert_allclose(a["boxes"], [[5, 10, 20, 30], [0, 0, 40, 60]])  # 1-based inclusive → edges
    np.testing.assert_array_equal(a["labels"], [2, 1])
    np.testing.assert_array_equal(a["difficult"], [False, True])
    assert a["image"].shape == (40, 60, 3) and abs(int(a["image"][20, 30, 0]) - 200) < 5
    np.testing.assert_allclose(b["boxes"], [[4, 9, 25, 40], [9, 29, 20, 50]])  # sorted; clipped to w=50
    np.testing.assert_array_equal(b["labels"], [0, 2])
    assert b["image"].shape == (30, 50, 3) and np.all(b["image"] == 90)  # gray → RGB

    everything, names_all = load_examples(root)  # split=None: every annotation
    assert names_all == names and len(list(everything)) == 3
    c = next(iter(load_examples(root, "val")[0]))
    assert c["image"].shape == (30, 30, 3) and c["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(c["image"][0, 0].numpy(), (5, 150, 250))  # RGBA → RGB


def test_voc_unknown_split_and_missing_image_are_explained(tmp_path):
    root = _voc_folder(tmp_path / "voc")
    with pytest.raises(FileNotFoundError, match="available splits"):
        load_examples(root, "nosuchsplit")
    (tmp_path / "voc" / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        load_examples(root, "train")


def test_corrupt_image_file_error_names_the_file(tmp_path):
    good = np.zeros((20, 20, 3), np.uint8)
    root = write_voc(
        str(tmp_path / "voc"),
        {
            "good": ("good.jpg", good, [("x", (1, 1, 5, 5), False)]),
            "bad": ("bad.jpg", b"\xff\xd8\xff\xe0 truncated nonsense", [("x", (1, 1, 5, 5), False)]),
        },
    )
    examples, _ = load_examples(root)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.jpg"):
        list(examples)


def _coco(tmp_path, annotations):
    images = [
        (1, "one.jpg", np.full((40, 50, 3), 120, np.uint8)),
        (2, "two.png", np.full((30, 30), 60, np.uint8)),
        (5, "empty.jpg", np.zeros((20, 20, 3), np.uint8)),
    ]
    return write_coco(
        str(tmp_path / "coco" / "annotations" / "instances_val.json"),
        images,
        [(7, "zebra"), (1, "person"), (3, "car")],
        annotations,
    )


COCO_ANNOTATIONS = [
    (10, 1, 7, [5.0, 10.0, 20.0, 15.0], 0),
    (11, 1, 1, [0.0, 0.0, 50.0, 40.0], 1),
    (12, 2, 3, [2.0, 3.0, 0.0, 10.0], 0),
]  # zero width: dropped


def test_coco_json_reader(tmp_path, caplog):
    json_path = _coco(tmp_path, COCO_ANNOTATIONS)
    with caplog.at_level(logging.WARNING, logger="rfcn_tf.data"):
        examples, names = load_examples(json_path)
    assert names == ["person", "car", "zebra"]  # category ids 1, 3, 7 → 0, 1, 2
    assert "1 empty boxes dropped" in caplog.text and "two.png" in caplog.text
    got = {ex["image_id"].decode(): ex for ex in tfds.as_numpy(examples)}
    assert sorted(got) == ["empty.jpg", "one.jpg", "two.png"]
    np.testing.assert_allclose(got["one.jpg"]["boxes"], [[10, 5, 25, 25], [0, 0, 40, 50]])
    np.testing.assert_array_equal(got["one.jpg"]["labels"], [2, 0])
    np.testing.assert_array_equal(got["one.jpg"]["difficult"], [False, True])  # crowd
    assert got["two.png"]["boxes"].shape == (0, 4) and got["two.png"]["image"].shape == (30, 30, 3)
    assert got["empty.jpg"]["labels"].shape == (0,)


def test_coco_folder_layout_and_split_rules(tmp_path):
    json_path = _coco(tmp_path, COCO_ANNOTATIONS)
    (tmp_path / "coco" / "val").mkdir()
    for f in ("one.jpg", "two.png", "empty.jpg"):
        (tmp_path / "coco" / "annotations" / f).rename(tmp_path / "coco" / "val" / f)
    examples, names = load_examples(str(tmp_path / "coco"), "val")
    assert len(list(examples)) == 3 and names == ["person", "car", "zebra"]
    with pytest.raises(FileNotFoundError, match="image_dir"):
        load_examples(json_path, "train")  # images moved away; a JSON ignores the split
    examples, _ = load_examples(json_path, "train", image_dir=str(tmp_path / "coco" / "val"))
    assert examples.cardinality().numpy() == 3
    assert make_pipeline(examples, 2, min_side=30, max_side=60).cardinality().numpy() == 2


def test_coco_unknown_category_names_the_annotation(tmp_path):
    json_path = _coco(tmp_path, COCO_ANNOTATIONS + [(13, 2, 99, [1.0, 1.0, 5.0, 5.0], 0)])
    with pytest.raises(ValueError, match=r"annotation 13 of image two.png: category_id 99"):
        load_examples(json_path)


def test_label_out_of_range_names_the_example():
    ds = examples_dataset(
        [
            example(20, 20, [[1, 1, 5, 5]], [0], image_id="fine.jpg"),
            example(20, 20, [[1, 1, 5, 5]], [3], image_id="wrong_label.jpg"),
        ]
    )
    it = iter(validate_examples(ds, num_classes=3))
    next(it)
    with pytest.raises(tf.errors.InvalidArgumentError, match="wrong_label.jpg"):
        next(it)


def test_graph_side_drops_are_counted_once_and_logged(caplog):
    boxes = [
        [5, 5, 5, 9],
        [30, 30, 40, 40],
        [2, 18, 8, 12],
        [-4, -4, 3, 3],
    ]  # zero h, outside, inverted, clipped
    ds = validate_examples(
        examples_dataset([example(20, 20, boxes, [0, 1, 0, 1], image_id="counted.png")]), 2
    )
    for _ in range(2):  # two epochs: still counted once
        ex = next(iter(ds))
    np.testing.assert_allclose(ex["boxes"].numpy(), [[2, 12, 8, 18], [0, 0, 3, 3]])
    np.testing.assert_array_equal(ex["labels"].numpy(), [0, 1])
    assert dropped_boxes()["counted.png"] == 2
    with caplog.at_level(logging.WARNING, logger="rfcn_tf.data"):
        assert log_dropped_boxes() >= 2
    assert "counted.png" in caplog.text


def test_mismatched_object_counts_name_the_example():
    bad = example(20, 20, [[1, 1, 5, 5]], [0], image_id="short_flags.jpg")
    bad["difficult"] = np.zeros(3, bool)
    with pytest.raises(tf.errors.InvalidArgumentError, match="short_flags.jpg"):
        list(validate_examples(examples_dataset([bad]), num_classes=1))


def test_folder_shuffle_is_a_repeatable_permutation(tmp_path):
    root = _voc_folder(tmp_path / "voc")
    orders = [
        [ex["image_id"].numpy() for ex in load_examples(root, shuffle=True, seed=4)[0]] for _ in range(2)
    ]
    assert orders[0] == orders[1] and sorted(orders[0]) == [b"a", b"b", b"c"]


def test_examples_without_image_id_are_named_by_index():
    ds = examples_dataset([example(20, 20, [[1, 1, 5, 5]], [0]), example(20, 20, [[1, 1, 5, 5]], [-1])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="example 1"):
        list(validate_examples(ds, num_classes=1))


def test_unknown_source_is_explained():
    with pytest.raises(ValueError, match="neither an existing file or folder nor a registered TFDS"):
        load_examples("no_such_dataset_xyz", "train")
    with pytest.raises(FileNotFoundError):
        load_examples("/no/such/folder", "train")
