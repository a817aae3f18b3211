"""make_pipeline: resize, flip, padding, batching, box format, options; read_image."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rfcn_tf.data import make_pipeline, validate_examples
from rfcn_tf.image_io import read_image
from tests.data_helpers import example, examples_dataset

RED = (250, 0, 0)


def _red_rect_example():
    """60 × 80 dark image, red on rows 10..29 and columns 50..69 → edge box [10, 50, 30, 70]."""
    image = np.full((60, 80, 3), (10, 20, 30), np.uint8)
    image[10:30, 50:70] = RED
    return {
        "image": image,
        "boxes": np.array([[10, 50, 30, 70]], np.float32),
        "labels": np.array([2], np.int32),
        "difficult": np.array([False]),
    }


def _assert_box_encloses_red(image, box):
    """Pixels 1 px inside the box are red, pixels 1 px outside are not."""
    ymin, xmin, ymax, xmax = box
    inside = image[
        int(np.ceil(ymin)) + 1 : int(np.floor(ymax)) - 1, int(np.ceil(xmin)) + 1 : int(np.floor(xmax)) - 1
    ]
    assert inside.size and np.all(inside[..., 0] > 240)
    red = image[..., 0] > 128
    red[
        max(int(np.floor(ymin)) - 1, 0) : int(np.ceil(ymax)) + 1,
        max(int(np.floor(xmin)) - 1, 0) : int(np.ceil(xmax)) + 1,
    ] = False
    assert not red.any()


@pytest.mark.parametrize("min_side", [120, 90])  # scale 2 and 1.5
def test_boxes_enclose_same_pixels_after_resize_and_flip(min_side):
    ds = examples_dataset([_red_rect_example()]).repeat(12)
    flipped = set()
    for inputs, targets in make_pipeline(ds, 1, min_side=min_side, max_side=1000, training=True, seed=3):
        image, box = inputs["images"][0].numpy(), targets["boxes"][0, 0].numpy()
        scale = min_side / 60
        assert tuple(inputs["image_sizes"][0].numpy()) == (min_side, round(80 * scale))
        assert targets["scales"][0].numpy() == pytest.approx(scale)
        _assert_box_encloses_red(image, box)
        flipped.add(bool(box[1] < image.shape[1] / 2))
        assert targets["labels"].numpy().tolist() == [[2]]
    assert flipped == {True, False}


def test_mixed_sizes_are_padded_with_true_sizes_kept():
    examples = [
        example(60, 80, [[5, 5, 20, 30]], [1]),
        example(100, 50, [[0, 0, 10, 10], [20, 20, 50, 40], [60, 10, 90, 45]], [0, 3, 2]),
        example(40, 40, []),
    ]
    ds = make_pipeline(examples_dataset(examples), batch_size=3, min_side=60, max_side=100)
    inputs, targets = next(iter(ds))
    # scales: min(60/60, 100/80)=1; min(60/50, 100/100)=1; min(60/40, 100/40)=1.5
    np.testing.assert_array_equal(inputs["image_sizes"].numpy(), [[60, 80], [100, 50], [60, 60]])
    np.testing.assert_allclose(targets["scales"].numpy(), [1.0, 1.0, 1.5])
    images = inputs["images"].numpy()
    assert images.shape == (3, 100, 80, 3) and images.dtype == np.float32
    for image, (h, w) in zip(images, inputs["image_sizes"].numpy()):
        np.testing.assert_allclose(image[:h, :w], 200.0, atol=1e-3)
        assert not image[h:].any() and not image[:, w:].any()
    boxes, labels, difficult = (targets[k].numpy() for k in ("boxes", "labels", "difficult"))
    assert boxes.shape == (3, 3, 4) and labels.shape == (3, 3) and difficult.shape == (3, 3)
    np.testing.assert_allclose(boxes[0, 0], [5, 5, 20, 30])
    np.testing.assert_allclose(boxes[0, 1:], -1.0)
    np.testing.assert_allclose(boxes[2], -1.0)
    np.testing.assert_array_equal(labels, [[1, -1, -1], [0, 3, 2], [-1, -1, -1]])
    assert not difficult.any()


def test_output_has_no_strings_and_fixed_max_boxes():
    examples = [example(30, 30, [[1, 1, 5, 5]], image_id="a"), example(30, 30, [], image_id="b")]
    ds = make_pipeline(examples_dataset(examples), batch_size=2, min_side=30, max_side=30, max_boxes=5)
    for spec in tf.nest.flatten(ds.element_spec):
        assert spec.dtype != tf.string
    _, targets = next(iter(ds))
    assert targets["boxes"].shape == (2, 5, 4) and targets["labels"].shape == (2, 5)


def test_more_boxes_than_max_boxes_names_the_example():
    ds = examples_dataset([example(30, 30, [[1, 1, 5, 5]] * 3, image_id="crowded.jpg")])
    with pytest.raises(tf.errors.InvalidArgumentError, match="crowded.jpg"):
        next(iter(make_pipeline(ds, 1, min_side=30, max_side=30, max_boxes=2)))


def test_multi_scale_picks_several_sides_in_training_and_the_largest_otherwise():
    ds = examples_dataset([example(50, 50, [[1, 1, 5, 5]])]).repeat(30)
    sizes = {
        int(x["image_sizes"][0, 0])
        for x, _ in make_pipeline(ds, 1, min_side=(40, 60, 80), max_side=200, training=True, seed=0)
    }
    assert sizes == {40, 60, 80}
    sizes = {int(x["image_sizes"][0, 0]) for x, _ in make_pipeline(ds, 1, min_side=(40, 60), max_side=200)}
    assert sizes == {60}  # the model's inference scale


def test_longer_side_is_capped_by_max_side():
    ds = examples_dataset([example(100, 400, [[10, 10, 90, 390]])])
    inputs, targets = next(iter(make_pipeline(ds, 1, min_side=600, max_side=1000)))
    np.testing.assert_array_equal(inputs["image_sizes"][0].numpy(), [250, 1000])
    assert targets["scales"][0].numpy() == pytest.approx(2.5)
    np.testing.assert_allclose(targets["boxes"][0, 0].numpy(), [25, 25, 225, 975], rtol=1e-5)


def _run(ds):
    return [(x["images"].numpy(), y["boxes"].numpy()) for x, y in ds]


def test_seed_makes_training_repeatable():
    rng = np.random.default_rng(0)
    examples = [
        {
            **example(40, 60, [[5, 5, 20, 20 + i]], [i % 3]),
            "image": rng.integers(0, 255, (40, 60, 3), np.uint8),
        }
        for i in range(10)
    ]
    make = lambda seed: make_pipeline(examples_dataset(examples), 2, 40, 100, training=True, seed=seed)  # noqa: E731
    first, second, other = _run(make(5)), _run(make(5)), _run(make(6))
    for (a_img, a_box), (b_img, b_box) in zip(first, second):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_box, b_box)
    assert any(not np.array_equal(a[1], c[1]) for a, c in zip(first, other))


def test_bad_arguments_are_explained():
    ds = examples_dataset([example(30, 30, [])])
    with pytest.raises(ValueError, match="batch_size"):
        make_pipeline(ds, 0)
    with pytest.raises(ValueError, match="min_side"):
        make_pipeline(ds, 1, min_side=-3)
    with pytest.raises(ValueError, match="missing"):
        make_pipeline(tf.data.Dataset.from_tensors({"image": tf.zeros([2, 2, 3], tf.uint8)}), 1)


def _encoded(array, fmt, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def test_read_image_converts_formats_to_rgb(tmp_path):
    gray = np.full((20, 40), 77, np.uint8)
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 200, 30), 128
    jpeg_path = tmp_path / "photo.jpg"
    jpeg_path.write_bytes(_encoded(np.full((20, 40, 3), (200, 100, 50), np.uint8), "JPEG"))
    cases = [
        (_encoded(gray, "PNG"), (77, 77, 77)),
        (_encoded(rgba, "PNG"), (10, 200, 30)),
        (str(jpeg_path), (200, 100, 50)),
    ]
    for image, colour in cases:
        pixels, size = read_image(image)
        assert pixels.shape == (20, 40, 3) and pixels.dtype == np.uint8 and tuple(size) == (20, 40)
        np.testing.assert_allclose(pixels[10, 20], colour, atol=3)


def test_read_image_corrupt_bytes_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(str(bad))
    with pytest.raises(ValueError, match="image bytes"):
        read_image(b"garbage")


def test_targets_in_the_requested_box_format():
    ds = examples_dataset([example(40, 60, [[5, 10, 20, 30]], [1]), example(40, 60, [], [])])
    _, yxyx = next(iter(make_pipeline(ds, 2, min_side=40, max_side=100)))
    _, xywh = next(iter(make_pipeline(ds, 2, min_side=40, max_side=100, bounding_box_format="xywh")))
    np.testing.assert_allclose(yxyx["boxes"][0, 0].numpy(), [5, 10, 20, 30])
    np.testing.assert_allclose(xywh["boxes"][0, 0].numpy(), [10, 5, 20, 15])
    np.testing.assert_array_equal(xywh["boxes"][1].numpy(), -1)  # padding stays -1
    with pytest.raises(ValueError, match="bounding_box_format"):
        make_pipeline(ds, 1, bounding_box_format="rel_xyxy")


def test_validated_examples_keep_pipeline_working():
    ds = validate_examples(examples_dataset([example(30, 40, [[20, 30, 5, 5]], [1])]), num_classes=2)
    _, targets = next(iter(make_pipeline(ds, 1, min_side=30, max_side=40)))
    np.testing.assert_allclose(targets["boxes"][0, 0].numpy(), [5, 5, 20, 30])
