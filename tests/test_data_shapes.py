"""The synthetic rfcn_shapes dataset: drawing and the TFDS builder."""

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rfcn_tf.data as data
from rfcn_tf.data.shapes import CLASS_NAMES, render_example
from rfcn_tf.data.shapes_builder import SPLITS, RfcnShapes, render_split_example

TINY = next(c for c in RfcnShapes.BUILDER_CONFIGS if c.name == "tiny")


def _as_numpy(examples):
    return {ex["image_id"].decode(): ex for ex in tfds.as_numpy(examples)}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds_a"), tmp_path_factory.mktemp("tfds_b")


@pytest.fixture(scope="module")
def tiny_train(tiny_dirs):
    examples, names = data.load_examples("rfcn_shapes/tiny", "train", data_dir=str(tiny_dirs[0]))
    return _as_numpy(examples), names


def _tight_box(mask):
    rows, cols = np.nonzero(mask)
    return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], np.float32)


def _iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_render_boxes_are_tight_on_visible_uniform_pixels():
    rng = np.random.default_rng(7)
    for _ in range(12):
        ex = render_example(rng, 160, num_objects=6)
        assert ex["image"].shape == (160, 160, 3) and ex["image"].dtype == np.uint8
        assert len(ex["boxes"]) == len(ex["labels"]) == len(ex["masks"]) >= 1
        for box, mask in zip(ex["boxes"], ex["masks"]):
            np.testing.assert_array_equal(box, _tight_box(mask))
            # The visible pixels really show the shape: one colour plus mild noise.
            assert ex["image"][mask].astype(float).std(axis=0).max() < 12.0
        for a, b in itertools.combinations(ex["boxes"], 2):
            assert _iou(a, b) <= 0.3 + 1e-6
        assert np.all(ex["masks"].sum(axis=0) <= 1)  # visible masks do not overlap


def test_render_sizes_span_small_to_large():
    rng = np.random.default_rng(3)
    sides = np.concatenate(
        [
            np.maximum(ex["boxes"][:, 2] - ex["boxes"][:, 0], ex["boxes"][:, 3] - ex["boxes"][:, 1])
            for ex in (render_example(rng, 192, num_objects=5) for _ in range(20))
        ]
    )
    assert sides.min() < 20 and sides.max() > 70
    assert sides.min() >= 6 and sides.max() <= 192


def test_builder_matches_drawing_and_covers_classes_and_empties(tiny_train):
    examples, names = tiny_train
    assert names == list(CLASS_NAMES)
    assert len(examples) == TINY.num_train
    seen_labels, empties = set(), 0
    for image_id, ex in examples.items():
        split, index = image_id.rsplit("_", 1)
        drawn = render_split_example(TINY, SPLITS.index(split), int(index))
        np.testing.assert_array_equal(ex["image"], drawn["image"])  # PNG is lossless
        np.testing.assert_array_equal(ex["labels"], drawn["labels"])
        expected = np.array([_tight_box(m) for m in drawn["masks"]], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(ex["boxes"], expected, atol=1e-3)
        assert not ex["difficult"].any()
        seen_labels.update(ex["labels"].tolist())
        empties += len(ex["labels"]) == 0
    assert seen_labels == set(range(len(CLASS_NAMES)))
    assert empties >= 1


def test_builder_is_deterministic(tiny_train, tiny_dirs):
    again, _ = data.load_examples("rfcn_shapes/tiny", "train", data_dir=str(tiny_dirs[1]))
    again = _as_numpy(again)
    first, _ = tiny_train
    assert list(again) == list(first)  # same order too
    for image_id, ex in first.items():
        for key in ("image", "boxes", "labels"):
            np.testing.assert_array_equal(again[image_id][key], ex[key])


def test_pipeline_length_is_known(tiny_dirs):
    examples, _ = data.load_examples(
        "rfcn_shapes/tiny", "train", data_dir=str(tiny_dirs[0]), shuffle=True, seed=1
    )
    batches = data.make_pipeline(examples, 5, min_side=128, max_side=128, training=True, seed=1)
    assert batches.cardinality().numpy() == -(-TINY.num_train // 5)


def test_builder_splits_differ_and_exist(tiny_dirs):
    validation, _ = data.load_examples("rfcn_shapes/tiny", "validation", data_dir=str(tiny_dirs[0]))
    test, _ = data.load_examples("rfcn_shapes/tiny", "test", data_dir=str(tiny_dirs[0]))
    validation, test = _as_numpy(validation), _as_numpy(test)
    assert len(validation) == TINY.num_validation and len(test) == TINY.num_test
    v0, t0 = validation["validation_000001"]["image"], test["test_000001"]["image"]
    assert not np.array_equal(v0, t0)


def test_custom_config_sets_size_and_counts(tmp_path):
    config = data.RfcnShapesConfig(name="test96", image_size=96, num_train=3, num_validation=1, num_test=1)
    examples, _ = data.load_examples(
        "rfcn_shapes", "train", data_dir=str(tmp_path), builder_kwargs={"config": config}
    )
    images = [ex["image"] for ex in tfds.as_numpy(examples)]
    assert len(images) == 3 and all(im.shape == (96, 96, 3) for im in images)
