"""Common examples → batches ``model.fit`` consumes.

Batched output of :func:`make_pipeline`, a tuple ``(inputs, targets)``::

    inputs  = {"images": float32 [B, Hpad, Wpad, 3] in 0..255, zero padded bottom/right,
               "image_sizes": int32 [B, 2] true (height, width) after resizing}
    targets = {"boxes": float32 [B, N, 4] pixels of the resized image in
               ``bounding_box_format`` (default yxyx), -1 padded,
               "labels": int32 [B, N] -1 padded, "difficult": int32 [B, N] 1 = difficult,
               0 padded, "scales": float32 [B] resized = original × scale}

(``difficult`` is 0/1 rather than bool because Keras's ``fit`` under a distribution strategy
averages the first batch across replicas, which a bool tensor cannot be.)

Resizing follows the model's rule (``rfcn_tf.image_scale``): the shorter side becomes
``min_side`` unless the longer side would then exceed ``max_side``. Pass the model's
``config.min_side`` / ``max_side``: its own resize is then the identity (other values
still work, the model resizes again). Boxes are scaled by the exact per-axis ratio of
the rounded output size, so they keep enclosing the same pixels.

In training, each example is first cropped (``crops.py``: large images only, by default),
then resized, then augmented (``augment.py``); boxes cut by either follow one rule
(``augment.mark_cut_boxes``): emptied → removed, less than ``min_visible`` of the area left →
difficult.
"""

import numbers

import tensorflow as tf

from rfcn_tf.config import BOX_FORMATS
from rfcn_tf.data.augment import make_augmentation, mark_cut_boxes
from rfcn_tf.data.crops import check_crop, crop_window, random_crop
from rfcn_tf.data.validation import check_example_spec, to_rgb
from rfcn_tf.image_scale import resize_image, resized_size
from rfcn_tf.inputs import to_model_format

AUTOTUNE = tf.data.AUTOTUNE


def _check_sides(min_side, max_side, training):
    sides = (min_side,) if isinstance(min_side, numbers.Integral) else tuple(min_side)
    if not sides or not all(isinstance(s, numbers.Integral) and s > 0 for s in sides):
        raise ValueError(f"min_side must be a positive int or a non-empty tuple of them, got {min_side!r}")
    if not (isinstance(max_side, numbers.Integral) and max_side > 0):
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    return sides if training else (max(sides),)  # inference: the model's largest scale


def _resize(image, min_side, max_side):
    """[H, W, 3] → (float32 [h, w, 3], (h, w) int32, per-axis ratios [2], scale)."""
    size = tf.shape(image)[:2]
    new_size = resized_size(size, min_side, max_side)
    ratios = tf.cast(new_size, tf.float32) / tf.cast(size, tf.float32)
    return resize_image(image, new_size), new_size, ratios, tf.reduce_min(ratios)


def make_pipeline(
    examples,
    batch_size,
    min_side=600,
    max_side=1000,
    training=False,
    seed=None,
    deterministic=None,
    max_boxes=None,
    shuffle_buffer=256,
    drop_remainder=False,
    bounding_box_format="yxyx",
    augment="flip",
    crop="auto",
    min_visible=0.5,
):
    """Common examples → prefetched ``(inputs, targets)`` batches (module doc).

    examples: a dataset from :func:`load_examples` (or any dataset of validated common
    examples). min_side: int, or a tuple to pick one at random per image in training
    (multi-scale; without training the largest). training: shuffle (``shuffle_buffer``
    decoded examples), crop and augment. seed: makes shuffling, scale choice, crops and
    augmentation repeatable: each example's result is a function of the seed and the example.
    deterministic: keep element order under parallel maps; default True unless
    training without a seed. max_boxes: pad N to this instead of the batch maximum
    (an image with more boxes raises an error naming it). bounding_box_format: the
    targets' box format (absolute pixels; the model's ``config.bounding_box_format``).
    augment (training only): a preset of ``AUGMENT_PRESETS`` — "none", "flip" (horizontal
    flips, the default), "standard", "strong", "overhead" — or a Keras layer or callable
    (``augment.make_augmentation``). crop (training only): "auto" (the default: images longer
    than 2 × max_side become random min_side × max_side windows at native resolution), an int
    size, or None (``crops.py``). min_visible: a box with less than this fraction of its area
    left after cropping/augmenting is marked difficult (ignored by training); one with
    nothing left is removed.
    """
    check_example_spec(examples)
    if bounding_box_format not in BOX_FORMATS:
        raise ValueError(f"bounding_box_format must be one of {BOX_FORMATS}, got {bounding_box_format!r}")
    sides = _check_sides(min_side, max_side, training)
    if not (isinstance(batch_size, numbers.Integral) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_boxes is not None and not (isinstance(max_boxes, numbers.Integral) and max_boxes > 0):
        raise ValueError(f"max_boxes must be None or a positive int, got {max_boxes!r}")
    if deterministic is None:
        deterministic = not training or seed is not None
    has_id = "image_id" in examples.element_spec
    crop = check_crop(crop)
    if not 0 <= min_visible <= 1:
        raise ValueError(f"min_visible must be in 0..1, got {min_visible!r}")
    augmentation = make_augmentation(augment, bounding_box_format) if training else None

    ds = examples
    if training:  # one random int64 per element seeds its stateless draws (scale, crop, augment)
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))

    def transform(ex, rand=None):
        boxes = tf.reshape(tf.cast(ex["boxes"], tf.float32), [-1, 4])
        if max_boxes is not None:
            name = ex["image_id"] if has_id else "(no image_id)"
            tf.debugging.Assert(
                tf.shape(boxes)[0] <= max_boxes,
                ["example", name, "has", tf.shape(boxes)[0], "boxes, more than max_boxes =", max_boxes],
            )
        side = sides[0]
        if len(sides) > 1:
            pick = tf.random.stateless_uniform([], tf.stack([rand, 0]), 0, len(sides), tf.int32)
            side = tf.gather(tf.constant(sides), pick)
        image = to_rgb(ex["image"])
        labels, difficult = tf.cast(ex["labels"], tf.int32), tf.cast(ex["difficult"], tf.int32)
        full_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # before any cut
        cut = False
        if training and crop is not None:
            image, boxes = random_crop(
                image, boxes, crop_window(tf.shape(image)[:2], crop, side, max_side), rand
            )
            cut = True
        image, size, ratios, scale = _resize(image, side, max_side)
        boxes = boxes * tf.tile(ratios, [2])
        full_area = full_area * ratios[0] * ratios[1]
        if augmentation is not None:
            image, boxes, area_scale = augmentation(image, boxes, rand)
            size = tf.shape(image)[:2]
            full_area = None if area_scale is None else full_area * area_scale
            cut = True
        if cut:
            boxes, labels, difficult = mark_cut_boxes(boxes, full_area, labels, difficult, min_visible)
        return {
            "image": image,
            "image_size": size,
            "scale": scale,
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
        }

    ds = ds.map(transform, num_parallel_calls=AUTOTUNE)
    n = max_boxes
    ds = ds.padded_batch(
        batch_size,
        padded_shapes={
            "image": [None, None, 3],
            "image_size": [2],
            "scale": [],
            "boxes": [n, 4],
            "labels": [n],
            "difficult": [n],
        },
        padding_values={
            "image": 0.0,
            "image_size": 0,
            "scale": 0.0,
            "boxes": -1.0,
            "labels": -1,
            "difficult": 0,
        },
        drop_remainder=drop_remainder,
    )

    def to_format(boxes):
        converted = to_model_format(boxes, bounding_box_format)
        return tf.where(boxes < 0, boxes, converted)  # keep the -1 padding

    ds = ds.map(
        lambda b: (
            {"images": b["image"], "image_sizes": b["image_size"]},
            {
                "boxes": to_format(b["boxes"]),
                "labels": b["labels"],
                "difficult": b["difficult"],
                "scales": b["scale"],
            },
        )
    )
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(AUTOTUNE)
