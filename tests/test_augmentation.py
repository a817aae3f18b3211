"""Training augmentation and crops: boxes follow the pixels, the cut-box rule, determinism."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.cli import build_parser
from rfcn_tf.config import RFCNConfig
from rfcn_tf.data import AUGMENT_PRESETS, make_pipeline
from rfcn_tf.data.arguments import batches_from_args
from rfcn_tf.data.augment import _KerasStep, mark_cut_boxes, preset_steps
from tests.data_helpers import examples_dataset

RED, BLUE, BACKGROUND = (230, 30, 30), (30, 30, 230), (20, 20, 20)
# How far from a box edge a pixel may be blended with the other side: bilinear resampling
# mixes 1 px across an edge, the 5 × 5 Gaussian blur 2 px, and RandomZoom places a box edge
# up to 0.5·|1 − s| ≤ 0.34 px (object scale s ≤ 1/0.6) from where its pixel-centre mapping
# puts the image edge (rounded up to 1 px).
MARGIN = 1 + 2 + 1
# Rectangle pixels are told from the grey background by their chroma (max − min channel):
# 200 for the rectangles, 0 for the background and the black fill. Hue shifts keep chroma;
# the strongest other changes (brightness +20 % clipping red at 255, contrast × 0.6,
# saturation × 1/1.6) leave (255 − 81) × 0.6 / 1.6 ≈ 65. Grey turns chroma-ful only through
# contrast about each channel's own mean: ≤ 0.4 × (20 levels between channel means) × 1.6 ≈ 13.
CHROMA = 30


def _scene(height=96, width=128, red=(14, 10, 44, 40), blue=(60, 80, 80, 128)):
    """Dark image, a red square (label 0) and a blue bar (label 1, on the right border by
    default), each box exactly its rectangle's pixels."""
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    for (y0, x0, y1, x1), colour in ((red, RED), (blue, BLUE)):
        image[y0:y1, x0:x1] = colour
    return {
        "image": image,
        "boxes": np.array([red, blue], np.float32),
        "labels": np.array([0, 1], np.int32),
        "difficult": np.array([False, False]),
    }


def _check_rectangles(image, boxes, labels):
    """Every coloured pixel lies within MARGIN of a box; every pixel MARGIN inside a box is
    coloured, in its label's colour (red: label 0, blue: label 1)."""
    image = np.asarray(image, np.float32)
    coloured = image.max(-1) - image.min(-1) > CHROMA
    covered = np.zeros_like(coloured)
    inner_pixels = 0
    for (y0, x0, y1, x1), label in zip(boxes, labels):
        covered[
            max(int(np.floor(y0)) - MARGIN, 0) : int(np.ceil(y1)) + MARGIN,
            max(int(np.floor(x0)) - MARGIN, 0) : int(np.ceil(x1)) + MARGIN,
        ] = True
        inner = (
            slice(int(np.ceil(y0)) + MARGIN, int(np.floor(y1)) - MARGIN),
            slice(int(np.ceil(x0)) + MARGIN, int(np.floor(x1)) - MARGIN),
        )
        assert coloured[inner].all(), f"box {(y0, x0, y1, x1)} holds background"
        red, blue = image[inner][..., 0], image[inner][..., 2]
        assert np.all(red > blue) if label == 0 else np.all(blue > red), f"label {label} on the wrong colour"
        inner_pixels += coloured[inner].size
    assert not (coloured & ~covered).any(), "rectangle pixels outside every box"
    return inner_pixels


def _batches(dataset):
    return [
        (
            x["images"].numpy(),
            x["image_sizes"].numpy(),
            y["boxes"].numpy(),
            y["labels"].numpy(),
            y["difficult"].numpy(),
        )
        for x, y in dataset
    ]


def _unpadded(batch, i=0):
    images, sizes, boxes, labels, difficult = batch
    real = labels[i] >= 0
    h, w = sizes[i]
    return images[i, :h, :w], boxes[i][real], labels[i][real], difficult[i][real]


def _all_steps():
    """Every distinct step of the presets: strong's, then overhead's vertical flip and rotation."""
    return preset_steps("strong") + preset_steps("overhead")[-2:]


STEP_NAMES = [
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "blur",
    "zoom",
    "translation",
    "horizontal_flip",
    "vertical_flip",
    "rot90",
]


@pytest.mark.parametrize("index", range(len(STEP_NAMES)), ids=STEP_NAMES)
def test_each_step_keeps_the_rectangles_under_their_boxes(index):
    step = _all_steps()[index]
    scene = _scene()
    image, boxes = tf.constant(scene["image"], tf.float32)[None], tf.constant(scene["boxes"])[None]
    rands = tf.range(32, dtype=tf.int64)
    outputs = tf.data.Dataset.from_tensor_slices(rands).map(lambda r: step(image, boxes, r)[:2])
    changed = 0
    for out_image, out_boxes in outputs:
        keep = mark_cut_boxes(out_boxes[0], None, tf.constant([0, 1]), tf.constant([0, 0]), 0.5)
        _check_rectangles(out_image[0].numpy(), keep[0].numpy(), keep[1].numpy())
        changed += not np.array_equal(out_image[0].numpy(), scene["image"])
    assert changed >= 4  # the step does something: blur, the rarest, on 40 % of images (P < 0.1 %)


@pytest.mark.slow
@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_each_preset_keeps_the_rectangles_under_their_boxes(preset):
    ds = examples_dataset([_scene()]).repeat(10)
    checked = 0
    for batch in _batches(make_pipeline(ds, 1, 96, 128, training=True, seed=4, augment=preset, crop=None)):
        image, boxes, labels, difficult = _unpadded(batch)
        checked += _check_rectangles(image, boxes, labels)
        assert len(boxes) == len(labels) == len(difficult)
    assert checked > 0


def test_mark_cut_boxes_matches_the_rule():
    boxes = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 4], [0, 0, 10, 5], [3, 3, 3, 9], [5, 5, 5, 5], [0, 0, 2, 2]], np.float32
    )
    full_area = np.array([100, 100, 100, 60, 0, 4], np.float32)
    labels, difficult = np.arange(6, dtype=np.int32), np.array([0, 0, 0, 0, 0, 1], np.int32)
    out = [
        t.numpy()
        for t in mark_cut_boxes(
            tf.constant(boxes), tf.constant(full_area), tf.constant(labels), tf.constant(difficult), 0.5
        )
    ]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = ~((full_area > 0) & (area <= 0))  # box 3 emptied; box 4 never had an area
    marked = np.where((full_area > 0) & (area < 0.5 * full_area), 1, difficult)
    np.testing.assert_array_equal(out[0], boxes[keep])
    np.testing.assert_array_equal(out[1], labels[keep])
    np.testing.assert_array_equal(out[2], marked[keep])
    assert out[2].tolist() == [0, 1, 0, 0, 1]  # 40 % left → difficult; 50 % kept


def _coordinate_image(height, width):
    """Each pixel encodes its own position: R = x mod 256, G = y mod 256, B = 16·(x // 256) + y // 256."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x % 256, y % 256, 16 * (x // 256) + y // 256], -1).astype(np.uint8)


def test_auto_crop_of_a_large_image_is_a_native_window_with_the_rule_applied():
    rng = np.random.default_rng(0)
    height, width = 300, 700
    corners = rng.uniform(0, [height, width], size=(12, 2))
    sides = rng.uniform(10, 60, size=(12, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sides, [height, width])], -1).astype(np.float32)
    ex = {
        "image": _coordinate_image(height, width),
        "boxes": boxes,
        "labels": np.arange(12, dtype=np.int32),
        "difficult": np.zeros(12, bool),
    }
    cut = 0
    for batch in _batches(
        make_pipeline(examples_dataset([ex]).repeat(30), 1, 48, 64, training=True, seed=1, augment="none")
    ):
        image, out_boxes, labels, difficult = _unpadded(batch)
        assert image.shape == (48, 64, 3)  # min_side × max_side, longer side along the width
        b, g, r = image[0, 0, 2], image[0, 0, 1], image[0, 0, 0]
        y0, x0 = int(b % 16) * 256 + int(g), int(b // 16) * 256 + int(r)
        np.testing.assert_array_equal(image, ex["image"][y0 : y0 + 48, x0 : x0 + 64])  # native pixels
        clipped = np.clip(boxes - [y0, x0, y0, x0], 0, [48, 64, 48, 64])
        area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        full = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = area > 0
        np.testing.assert_allclose(out_boxes, clipped[keep], atol=1e-4)
        np.testing.assert_array_equal(labels, np.arange(12)[keep])
        np.testing.assert_array_equal(difficult, (area < 0.5 * full)[keep])
        cut += int(np.sum(difficult))
    assert cut > 0


@pytest.mark.slow
def test_crops_of_a_large_image_keep_the_rectangles_under_their_boxes():
    scene = _scene(400, 600, red=(200, 300, 230, 330), blue=(250, 100, 262, 150))
    sizes = set()
    for batch in _batches(
        make_pipeline(
            examples_dataset([scene]).repeat(12), 1, 96, 128, training=True, seed=2, augment="standard"
        )
    ):
        image, boxes, labels, _ = _unpadded(batch)
        sizes.add(image.shape[:2])
        _check_rectangles(image, boxes, labels)
    assert sizes == {(96, 128)}


def test_crops_prefer_windows_with_objects():
    """A 10 px object in a 1000 px image: a uniform 48 × 64 window holds it 0.4 % of the time;
    half the windows are placed on an object."""
    image = np.zeros((1000, 1000, 3), np.uint8)
    ex = {
        "image": image,
        "boxes": np.array([[700, 300, 710, 310]], np.float32),
        "labels": np.array([0], np.int32),
        "difficult": np.array([False]),
    }
    hits = sum(
        int((labels[0] >= 0).sum())
        for _, _, _, labels, _ in _batches(
            make_pipeline(examples_dataset([ex]).repeat(40), 1, 48, 64, training=True, seed=0, augment="none")
        )
    )
    assert 10 <= hits <= 30  # binomial(40, ≈ 0.5): outside this range with probability < 0.1 %


def test_auto_leaves_images_up_to_twice_max_side_untouched():
    scene = _scene(100, 256, blue=(60, 200, 80, 256))  # longer side 256 = 2 × max_side
    ds = examples_dataset([scene]).repeat(4)
    auto = _batches(make_pipeline(ds, 2, 64, 128, training=True, seed=3))
    none = _batches(make_pipeline(ds, 2, 64, 128, training=True, seed=3, crop=None))
    for a, b in zip(auto, none):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert auto[0][1].tolist() == [[50, 128], [50, 128]]  # resized, not cropped


def test_crop_size_cuts_windows_then_resizes():
    scene = _scene(150, 250, red=(40, 40, 70, 70), blue=(110, 150, 130, 250))
    for batch in _batches(
        make_pipeline(
            examples_dataset([scene]).repeat(8), 1, 40, 1000, training=True, seed=5, crop=80, augment="none"
        )
    ):
        image, boxes, labels, _ = _unpadded(batch)
        assert image.shape[:2] == (40, 40)  # an 80 × 80 window at scale 1/2
        _check_rectangles(image, boxes, labels)


def _varied_examples(count=6):
    rng = np.random.default_rng(1)
    return [
        {
            **_scene(),
            "image": np.clip(_scene()["image"] + rng.integers(0, 20, (96, 128, 1)), 0, 255).astype(np.uint8),
        }
        for _ in range(count)
    ]  # grey noise


@pytest.mark.slow
@pytest.mark.parametrize("preset", [p for p in AUGMENT_PRESETS if p != "none"])
def test_same_seed_same_batches_other_seed_other_batches(preset):
    ds = examples_dataset(_varied_examples(4))

    def run(seed):  # no shuffling: the batches differ only by their augmentation
        return _batches(
            make_pipeline(ds, 2, 96, 128, training=True, seed=seed, augment=preset, shuffle_buffer=1)
        )

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[0], c[0]) for a, c in zip(first, other))


@pytest.mark.slow
def test_a_resumed_run_sees_the_same_epochs():
    """``rfcn-tf train`` sets the global seed and builds each epoch's batches from seed + 1000 ×
    epoch; a run resumed at epoch 1 (epoch 0 never iterated, other random ops drawn before)
    must get the batches the uninterrupted run got."""
    examples = _varied_examples()

    def epoch(e):
        return _batches(
            make_pipeline(
                examples_dataset(examples),
                2,
                96,
                128,
                training=True,
                seed=1000 * e,
                augment="strong",
                crop=64,
            )
        )

    keras.utils.set_random_seed(1)  # as rfcn-tf train does, from --seed
    uninterrupted = [epoch(e) for e in range(3)]
    keras.utils.set_random_seed(1)
    tf.random.uniform([3])  # other random work before
    resumed = [epoch(e) for e in (1, 2)]
    for a_epoch, b_epoch in zip(uninterrupted[1:], resumed):
        for a, b in zip(a_epoch, b_epoch):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    assert not np.array_equal(uninterrupted[1][0][0], uninterrupted[2][0][0])


@pytest.mark.parametrize("index", range(7), ids=STEP_NAMES[:7])
def test_transformations_have_the_layers_own_format(index):
    """Each step builds its layer's transformation itself (stateless); it must have the keys
    and shapes of the layer's own ``get_random_transformation`` (a Keras upgrade changing
    them fails here)."""
    step = _all_steps()[index]
    assert isinstance(step, _KerasStep)
    images = tf.zeros([1, 32, 48, 3])
    ours, _ = step.draw(images, tf.constant(0, tf.int64))
    theirs = step.layer.get_random_transformation(images, training=True)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        if key != "input_shape":
            assert tuple(ours[key].shape) == tuple(keras.ops.shape(theirs[key])), key


@pytest.mark.slow
def test_a_keras_layer_or_a_seeded_function_as_augment():
    ds = examples_dataset([_scene()]).repeat(6)
    layer = keras.layers.RandomFlip("vertical", bounding_box_format="xyxy", seed=1)
    flipped = 0
    for batch in _batches(
        make_pipeline(
            ds, 1, 96, 128, training=True, seed=0, augment=layer, bounding_box_format="xyxy", crop=None
        )
    ):
        image, boxes, labels, _ = _unpadded(batch)
        _check_rectangles(image, boxes[:, [1, 0, 3, 2]], labels)
        flipped += boxes[0, 1] > 48
    assert 0 < flipped < 6

    def drop_blue_sometimes(data, seed):  # removes the blue box (label −1) on some images
        drop = tf.random.stateless_uniform([], seed) < 0.5
        labels = data["bounding_boxes"]["labels"]
        labels = tf.where(drop & (tf.range(tf.shape(labels)[0]) == 1), -1, labels)
        return {**data, "bounding_boxes": {**data["bounding_boxes"], "labels": labels}}

    scene = {**_scene(), "difficult": np.array([False, True])}

    def run():
        return _batches(
            make_pipeline(
                examples_dataset([scene]).repeat(10),
                1,
                96,
                128,
                training=True,
                seed=0,
                augment=drop_blue_sometimes,
                crop=None,
            )
        )

    first = run()
    kept = [_unpadded(b)[2].tolist() for b in first]
    assert {tuple(k) for k in kept} == {(0,), (0, 1)}
    assert all(_unpadded(b)[3].tolist() == [0, 1][: len(k)] for b, k in zip(first, kept))
    assert kept == [_unpadded(b)[2].tolist() for b in run()]


def test_bad_augment_and_crop_are_errors_naming_them():
    ds = examples_dataset([_scene()])
    with pytest.raises(ValueError, match=r"augment \(--augment\) must be one of .*'sharp'"):
        make_pipeline(ds, 1, training=True, augment="sharp")
    with pytest.raises(ValueError, match=r"augment \(--augment\)"):
        make_pipeline(ds, 1, training=True, augment=3)
    with pytest.raises(ValueError, match=r"crop \(--crop\)"):
        make_pipeline(ds, 1, training=True, crop="big")
    with pytest.raises(ValueError, match="min_visible"):
        make_pipeline(ds, 1, training=True, min_visible=2)


@pytest.mark.slow
def test_train_command_line_options(capsys):
    parse = build_parser().parse_args
    args = parse(["train", "--augment", "overhead", "--crop", "512"])
    assert (args.augment, args.crop) == ("overhead", 512)
    args = parse(["train"])
    assert (args.augment, args.crop) == ("flip", "auto")
    for bad, flag in ((["--augment", "sharp"], "--augment"), (["--crop", "-5"], "--crop")):
        with pytest.raises(SystemExit):
            parse(["train", *bad])
        assert flag in capsys.readouterr().err

    args = parse(["train", "--augment", "none", "--crop", "none", "--batch-size", "2"])
    config = RFCNConfig.small(num_classes=2, min_side=96, max_side=128)
    ds = examples_dataset(_varied_examples(4))
    from_args = _batches(batches_from_args(args, ds, config, training=True, seed=0))
    direct = _batches(make_pipeline(ds, 2, 96, 128, training=True, seed=0, augment="none", crop=None))
    flipped = _batches(make_pipeline(ds, 2, 96, 128, training=True, seed=0, augment="flip", crop=None))
    for a, b in zip(from_args, direct):
        np.testing.assert_array_equal(a[0], b[0])
    assert any(not np.array_equal(a[0], c[0]) for a, c in zip(from_args, flipped))
