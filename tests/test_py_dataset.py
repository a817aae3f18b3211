"""DetectionDataset (numpy + Pillow) against make_pipeline (tf.data) on the same sources."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rfcn_tf.data import DetectionDataset, load_examples, make_pipeline, read_examples
from rfcn_tf.data.folder_records import clean_box_array
from rfcn_tf.data.py_dataset import resized_size
from rfcn_tf.data.validation import clean_boxes
from rfcn_tf.image_scale import resized_size as tf_resized_size
from tests.data_helpers import write_coco, write_voc

# Pillow's and TensorFlow's antialiased bilinear resize weigh the same taps with the same
# triangle kernel; they differ in precision (Pillow: double weights and sums, TF: float32), so
# an output pixel differs by a few float32 ulps of 255 times the number of taps — well under
# 0.01 of a grey level for these scales. A different kernel or tap placement would show up as
# differences of several levels on these textured images.
PIXEL_TOLERANCE = 0.01
BOX_TOLERANCE = 1e-3  # pixels: both scale by the same float32 ratios


def _image(rng, height, width):
    """Texture with edges and smooth parts: a coarse random grid upscaled, plus noise."""
    coarse = rng.integers(0, 256, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.NEAREST), np.int16)
    return np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


SIZES = [(48, 64), (100, 75), (130, 40), (64, 64), (31, 90)]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = {}
    for i, (h, w) in enumerate(SIZES):
        objects = [
            ("cat" if k % 2 else "dog", (1 + k * 3, 2 + k, w // 2 + k, h // 2 + 2 * k), k == 2)
            for k in range(i + 1)
        ]
        images[f"im{i}"] = (f"im{i}.png", _image(rng, h, w), objects)
    return write_voc(str(tmp_path_factory.mktemp("voc")), images)


def _tf_batches(source, batch_size, **kwargs):
    examples, names = load_examples(source)
    return list(make_pipeline(examples, batch_size, **kwargs).as_numpy_iterator()), names


def _assert_same_batches(tf_batches, py_dataset):
    assert len(tf_batches) == len(py_dataset)
    for (tf_in, tf_out), (py_in, py_out) in zip(tf_batches, (py_dataset[i] for i in range(len(py_dataset)))):
        np.testing.assert_array_equal(py_in["image_sizes"], tf_in["image_sizes"])
        assert py_in["images"].shape == tf_in["images"].shape and py_in["images"].dtype == np.float32
        np.testing.assert_allclose(py_in["images"], tf_in["images"], rtol=0, atol=PIXEL_TOLERANCE)
        np.testing.assert_allclose(py_out["boxes"], tf_out["boxes"], rtol=0, atol=BOX_TOLERANCE)
        for key in ("labels", "difficult"):
            np.testing.assert_array_equal(py_out[key], tf_out[key])
            assert py_out[key].dtype == np.int32
        np.testing.assert_allclose(py_out["scales"], tf_out["scales"], rtol=1e-6)


@pytest.mark.parametrize("sides", [(32, 48), (96, 160)])  # shrinking and enlarging
def test_voc_folder_matches_make_pipeline(voc_root, sides):
    tf_batches, names = _tf_batches(voc_root, 2, min_side=sides[0], max_side=sides[1])
    dataset = DetectionDataset(voc_root, 2, min_side=sides[0], max_side=sides[1])
    assert dataset.class_names == names
    _assert_same_batches(tf_batches, dataset)


def test_coco_json_and_box_formats_match_make_pipeline(tmp_path):
    rng = np.random.default_rng(1)
    images = [(i + 1, f"c{i}.png", _image(rng, h, w)) for i, (h, w) in enumerate(SIZES[:3])]
    annotations = [(1, 1, 3, [2, 3, 20, 10], 0), (2, 1, 7, [5, 5, 30, 30], 1), (3, 3, 3, [1, 1, 10, 60], 0)]
    path = write_coco(str(tmp_path / "c" / "ann.json"), images, [(3, "a"), (7, "b")], annotations)
    for box_format in ("yxyx", "xywh"):
        kwargs = {"min_side": 50, "max_side": 90, "bounding_box_format": box_format, "max_boxes": 4}
        tf_batches, names = _tf_batches(path, 3, **kwargs)
        dataset = DetectionDataset(path, 3, **kwargs)
        assert dataset.class_names == names == ["a", "b"]
        _assert_same_batches(tf_batches, dataset)


def test_rfcn_shapes_matches_the_tfds_build(tmp_path):
    """The synthetic images drawn on the fly equal the TFDS build's, example by example."""
    examples, names = load_examples("rfcn_shapes/tiny", "validation", data_dir=str(tmp_path))
    drawn, drawn_names = read_examples("rfcn_shapes/tiny", "validation")
    assert drawn_names == names and len(drawn) == 8
    by_id = {ex["image_id"]: ex for ex in (drawn[i] for i in range(len(drawn)))}
    seen = 0
    for ex in examples.as_numpy_iterator():
        ours = by_id[ex["image_id"].decode()]
        np.testing.assert_array_equal(ours["image"], ex["image"])
        np.testing.assert_allclose(ours["boxes"], ex["boxes"], rtol=0, atol=BOX_TOLERANCE)
        np.testing.assert_array_equal(ours["labels"], ex["labels"])
        np.testing.assert_array_equal(ours["difficult"], ex["difficult"])
        seen += 1
    assert seen == 8


def test_training_flips_are_seeded_per_epoch_and_exact_mirrors(voc_root):
    """Flip draws are numpy's, not TF's: each training example is the evaluation example or
    its exact mirror; the same seed and epoch repeat them; epochs differ."""
    kwargs = {"min_side": 40, "max_side": 64}
    plain = DetectionDataset(voc_root, 1, **kwargs)
    reference = {tuple(plain[i][1]["boxes"][0, 0]): plain[i] for i in range(len(plain))}

    def epoch(dataset):
        out = [dataset[i] for i in range(len(dataset))]
        dataset.on_epoch_end()
        return out

    first, second = (
        DetectionDataset(voc_root, 1, training=True, seed=3, crop=None, **kwargs) for _ in range(2)
    )
    runs = [epoch(first), epoch(first), epoch(first)]
    flips = []
    for batches in runs:
        flipped = 0
        for inputs, targets in batches:
            h, w = inputs["image_sizes"][0]
            boxes = targets["boxes"][0]
            mirror = np.stack([boxes[:, 0], w - boxes[:, 3], boxes[:, 2], w - boxes[:, 1]], -1)
            if tuple(boxes[0]) in reference:
                ref_in, ref_out = reference[tuple(boxes[0])]
                np.testing.assert_array_equal(inputs["images"], ref_in["images"])
            else:
                ref_in, ref_out = reference[tuple(mirror[0])]
                np.testing.assert_array_equal(inputs["images"][0, :h, :w], ref_in["images"][0, :h, ::-1])
                np.testing.assert_allclose(mirror, ref_out["boxes"][0], atol=BOX_TOLERANCE)
                flipped += 1
            np.testing.assert_array_equal(targets["labels"], ref_out["labels"])
        flips.append(flipped)
    again = epoch(second)
    for (a_in, a_out), (b_in, b_out) in zip(runs[0], again):
        np.testing.assert_array_equal(a_in["images"], b_in["images"])
        np.testing.assert_array_equal(a_out["boxes"], b_out["boxes"])
    orders = [[tuple(b[1]["labels"][0]) + tuple(b[0]["image_sizes"][0]) for b in run] for run in runs]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled each epoch
    assert 0 < sum(flips) < 3 * len(plain)


def test_auto_crop_and_fixed_canvas(tmp_path):
    """A large image becomes a min_side × max_side window at native resolution (crops.py's
    rule), boxes inside it; a fixed canvas and max_boxes give every batch one shape."""
    rng = np.random.default_rng(2)
    images = {"big": ("big.png", _image(rng, 100, 300), [("a", (10, 10, 40, 40), False)])}
    images["small"] = ("small.png", _image(rng, 30, 40), [("a", (2, 2, 20, 20), False)])
    root = write_voc(str(tmp_path / "voc"), images)
    dataset = DetectionDataset(
        root, 2, min_side=32, max_side=48, training=True, seed=0, canvas=(48, 48), max_boxes=3
    )
    for _ in range(4):
        inputs, targets = dataset[0]
        assert inputs["images"].shape == (2, 48, 48, 3) and targets["boxes"].shape == (2, 3, 4)
        sizes = {tuple(s) for s in inputs["image_sizes"]}
        assert (32, 48) in sizes  # the 100 × 300 image, longer than 2 × 48: a 32 × 48 window
        valid = targets["labels"] >= 0
        assert np.all(targets["boxes"][valid] >= 0) and np.all(targets["boxes"][valid] <= 48)
        dataset.on_epoch_end()


def test_numpy_twins_equal_the_tf_functions():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 3000, (2000, 2))
    for min_side, max_side in [(600, 1000), (192, 320), (37, 41)]:
        expected = tf_resized_size(sizes, min_side, max_side).numpy()
        np.testing.assert_array_equal([resized_size(s, min_side, max_side) for s in sizes], expected)
    boxes = rng.uniform(-20, 120, (500, 4)).astype(np.float32)
    boxes[::50] = np.nan
    ours, keep = clean_box_array(boxes, 100, 80)
    theirs, tf_keep = clean_boxes(tf.constant(boxes), 100, 80)
    np.testing.assert_array_equal(keep, tf_keep.numpy())
    np.testing.assert_array_equal(ours[keep], theirs.numpy()[keep])


def test_errors_name_the_problem(voc_root, tmp_path):
    with pytest.raises(ValueError, match="augment must be 'none' or 'flip'"):
        DetectionDataset(voc_root, 1, augment="standard")
    with pytest.raises(ValueError, match="more than max_boxes = 2"):
        DetectionDataset(voc_root, 5, max_boxes=2)[0]
    with pytest.raises(ValueError, match="neither an existing file"):
        read_examples("voc/2007", "train")
    broken = tmp_path / "voc"
    write_voc(str(broken), {"x": ("x.png", b"not an image", [("a", (1, 1, 5, 5), False)])})
    with pytest.raises(ValueError, match=os.path.join("JPEGImages", "x.png") + ": could not read"):
        DetectionDataset(str(broken), 1)[0]
