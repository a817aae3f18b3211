"""Box-aware training augmentation: presets of Keras 3 preprocessing layers, drawn per example.

``make_augmentation(augment)`` → ``augmentation(image, boxes, rand) → (image, boxes,
area_scale)`` for :func:`make_pipeline`: ``image`` float32 ``[H, W, 3]`` in 0..255, ``boxes``
float32 ``[N, 4]`` absolute ``yxyx``, ``rand`` the example's int64 from the pipeline;
``area_scale`` [] is how much the geometric steps scaled every object's area (the pipeline
compares it with the boxes' areas after clipping: see ``mark_cut_boxes``).

Presets (``AUGMENT_PRESETS``):

- ``none``: nothing.
- ``flip``: horizontal flip with probability ½ (the default; 0.5.1's only augmentation).
- ``standard``: photometric — brightness ±10 % of the range, contrast ×[0.8, 1.2], saturation
  ×[1/1.3, 1.3], hue ±0.02 turns, Gaussian blur (σ 0.1–1.0, 5×5) on 20 % of images; geometric —
  scale jitter (objects ×[0.75, 1.33], log-uniform; zooming in crops, zooming out pads with
  black), translation ±10 % of each side, horizontal flip.
- ``strong``: the same, more of it: brightness ±20 %, contrast ×[0.6, 1.4], saturation
  ×[1/1.6, 1.6], hue ±0.05, blur (σ 0.1–1.5) on 40 %, objects ×[0.6, 1.67] with aspect ratio
  ×[1/1.2, 1.2], translation ±20 %, horizontal flip.
- ``overhead``: ``standard`` plus vertical flips and 90° rotations (all 8 orientations of a
  top-down photo: no up, no left in aerial or microscope images).

Photometric steps run first (so the black fill of zooming out and translating stays black, as
the batch padding), then geometric ones. The image keeps its size except for 90° rotations,
which swap height and width.

Determinism: Keras's random layers draw from a ``SeedGenerator`` whose state advances with
every call, so a layer inside ``Dataset.map`` gives results that depend on how many elements it
has seen (and, in parallel maps, in which order). Here every random parameter is drawn with
``tf.random.stateless_*`` from ``[rand, step]`` and handed to the layer's public
``transform_images`` / ``transform_bounding_boxes`` as an explicit transformation: the
augmented example is a function of the pipeline's seed and the example only, so an epoch built
again (a resumed run) is augmented exactly as before. Flips and 90° rotations are plain ops
with exact box arithmetic (``tf.reverse``, ``tf.image.rot90``; Keras's ``RandomRotation`` keeps
the canvas, cutting the corners off a non-square image).

``augment`` may also be a Keras layer or a callable: see :func:`make_augmentation`.
"""

import math

import keras
import tensorflow as tf

from rfcn_tf.data.py_dataset import AUGMENT_PRESETS
from rfcn_tf.inputs import from_model_format, to_model_format

_STANDARD = {
    "brightness": 0.1,
    "contrast": 0.2,
    "saturation": 1.3,
    "hue": 0.02,
    "blur": (0.2, 1.0),
    "scale": (0.75, 1 / 0.75),
    "aspect": 1.0,
    "translate": 0.1,
}
_STRONG = {
    "brightness": 0.2,
    "contrast": 0.4,
    "saturation": 1.6,
    "hue": 0.05,
    "blur": (0.4, 1.5),
    "scale": (0.6, 1 / 0.6),
    "aspect": 1.2,
    "translate": 0.2,
}

# Stream ids of the stateless draws: [rand, id]. 0 (the multi-scale side) and 1 (the
# horizontal flip, as in 0.5.1) are the pipeline's; 2 is the crop window (``crops.py``).
_HFLIP, _VFLIP, _ROT90, _ZOOM, _TRANSLATE = 1, 3, 4, 5, 6
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE, _BLUR = 7, 8, 9, 10, 11


def _seed(rand, stream):
    return tf.stack([rand, tf.constant(stream, tf.int64)])


def _uniform(rand, stream, shape, low=0.0, high=1.0):
    return tf.random.stateless_uniform(shape, _seed(rand, stream), low, high)


def _log_between(u, low, high):
    """u in [0, 1) → log-uniform in [low, high)."""
    return tf.exp(math.log(low) + u * (math.log(high) - math.log(low)))


class _KerasStep:
    """One Keras preprocessing layer with its transformation drawn from the example's ``rand``.

    draw: ``(images [1, H, W, 3], rand) → (transformation, area_scale)`` in the layer's own
    transformation format (that of its ``get_random_transformation``).
    """

    def __init__(self, layer, draw, moves_boxes):
        self.layer, self.draw, self.moves_boxes = layer, draw, moves_boxes

    def __call__(self, images, boxes, rand):
        transformation, area_scale = self.draw(images, rand)
        images = self.layer.transform_images(images, transformation)
        if self.moves_boxes:
            moved = self.layer.transform_bounding_boxes(
                {"boxes": boxes, "labels": tf.zeros(tf.shape(boxes)[:2], tf.int32)}, transformation
            )
            boxes = moved["boxes"]
        return images, boxes, area_scale


class _Flip:
    """Mirror along ``axis`` (2: left–right, 1: up–down) with probability ½; boxes exactly
    (x → W − x). Plain ops rather than ``RandomFlip``, whose boxes go through relative
    coordinates (x/W, 1 − ·, ×W: off by up to 8e-6 px) — the default preset so stays
    bit-identical to 0.5.1's pipeline."""

    def __init__(self, axis, stream):
        self.axis, self.stream = axis, stream

    def __call__(self, images, boxes, rand):
        flip = _uniform(rand, self.stream, []) < 0.5
        length = tf.cast(tf.shape(images)[self.axis], tf.float32)
        lo, hi = (1, 3) if self.axis == 2 else (0, 2)  # the flipped axis's columns in yxyx
        columns = tf.unstack(boxes, 4, axis=-1)
        columns[lo], columns[hi] = length - columns[hi], length - columns[lo]
        images = tf.cond(flip, lambda: tf.reverse(images, [self.axis]), lambda: images)
        return images, tf.where(flip, tf.stack(columns, -1), boxes), 1.0


def _float_shape(images):
    # RandomZoom / RandomTranslation compute their box transform in float32 from the input
    # shape; a dynamic (int32 tensor) shape must be float for that arithmetic.
    return tf.cast(tf.shape(images), tf.float32)


def _zoom(scale, aspect):
    """Objects ×s (log-uniform in ``scale``) about the centre, their aspect ratio ×a
    (log-uniform in [1/aspect, aspect]): RandomZoom's factors are 1/(s·√a), 1/(s/√a)."""
    factor = (1 / scale[1] - 1, 1 / scale[0] - 1)  # RandomZoom's zoom is 1 + factor = 1/s
    layer = keras.layers.RandomZoom(
        factor, factor, fill_mode="constant", fill_value=0.0, bounding_box_format="yxyx", dtype="float32"
    )

    def draw(images, rand):
        u = _uniform(rand, _ZOOM, [2, 1])
        s, a = _log_between(u[0], *scale), _log_between(u[1], 1 / aspect, aspect)
        sy, sx = s * tf.sqrt(a), s / tf.sqrt(a)
        return (
            {
                "height_zoom": 1 / sy[:, None],
                "width_zoom": 1 / sx[:, None],
                "input_shape": _float_shape(images),
            },
            sy[0] * sx[0],
        )

    return _KerasStep(layer, draw, moves_boxes=True)


def _translate(fraction):
    layer = keras.layers.RandomTranslation(
        fraction, fraction, fill_mode="constant", fill_value=0.0, bounding_box_format="yxyx", dtype="float32"
    )

    def draw(images, rand):
        shape = _float_shape(images)
        shift = _uniform(rand, _TRANSLATE, [1, 2], -fraction, fraction) * tf.stack([shape[2], shape[1]])
        return {"translations": shift, "input_shape": shape}, 1.0

    return _KerasStep(layer, draw, moves_boxes=True)


def _brightness(delta):
    layer = keras.layers.RandomBrightness(delta, value_range=(0, 255), dtype="float32")

    def draw(images, rand):
        return {"rgb_delta": _uniform(rand, _BRIGHTNESS, [1, 1, 1, 1], -delta, delta) * 255.0}, 1.0

    return _KerasStep(layer, draw, moves_boxes=False)


def _contrast(factor):
    layer = keras.layers.RandomContrast(factor, value_range=(0, 255), dtype="float32")

    def draw(images, rand):
        return {"contrast_factor": _uniform(rand, _CONTRAST, [1, 1, 1, 1], 1 - factor, 1 + factor)}, 1.0

    return _KerasStep(layer, draw, moves_boxes=False)


def _saturation(ratio):
    # RandomSaturation's factor f multiplies the HSV saturation by f / (1 − f)
    layer = keras.layers.RandomSaturation(
        (1 / (1 + ratio), ratio / (1 + ratio)), value_range=(0, 255), dtype="float32"
    )

    def draw(images, rand):
        return {"factor": _log_between(_uniform(rand, _SATURATION, [1]), 1 / ratio, ratio)}, 1.0

    return _KerasStep(layer, draw, moves_boxes=False)


def _hue(shift):
    layer = keras.layers.RandomHue(2 * shift, value_range=(0, 255), dtype="float32")

    def draw(images, rand):  # RandomHue adds "factor" (in turns) to the hue
        return {"factor": _uniform(rand, _HUE, [1], -shift, shift)}, 1.0

    return _KerasStep(layer, draw, moves_boxes=False)


def _blur(probability, max_sigma):
    layer = keras.layers.RandomGaussianBlur(
        probability, kernel_size=5, sigma=(0.1, max_sigma), value_range=(0, 255), dtype="float32"
    )

    def draw(images, rand):
        u = _uniform(rand, _BLUR, [2])
        sigma = 0.1 + u[1] * (max_sigma - 0.1)
        return {"should_apply_blur": (u[0] < probability)[None], "blur_factor": tf.fill([2], sigma)}, 1.0

    return _KerasStep(layer, draw, moves_boxes=False)


class _Rot90:
    """A quarter turn k ∈ {0, 1, 2, 3} counter-clockwise (``tf.image.rot90``), boxes exactly."""

    def __call__(self, images, boxes, rand):
        k = tf.random.stateless_uniform([], _seed(rand, _ROT90), 0, 4, tf.int32)
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        h, w = size[0], size[1]
        y0, x0, y1, x1 = tf.unstack(boxes, 4, axis=-1)
        turns = tf.stack(
            [
                tf.stack([y0, x0, y1, x1], -1),
                tf.stack([w - x1, y0, w - x0, y1], -1),
                tf.stack([h - y1, w - x1, h - y0, w - x0], -1),
                tf.stack([x0, h - y1, x1, h - y0], -1),
            ]
        )
        return tf.image.rot90(images, k), tf.gather(turns, k), 1.0


def _photometric(p):
    return [
        _brightness(p["brightness"]),
        _contrast(p["contrast"]),
        _saturation(p["saturation"]),
        _hue(p["hue"]),
        _blur(*p["blur"]),
    ]


def _geometric(p):
    return [_zoom(p["scale"], p["aspect"]), _translate(p["translate"]), _Flip(2, _HFLIP)]


def preset_steps(name):
    """A preset's name → its list of steps (module doc)."""
    if name == "none":
        return []
    if name == "flip":
        return [_Flip(2, _HFLIP)]
    if name == "standard":
        return _photometric(_STANDARD) + _geometric(_STANDARD)
    if name == "strong":
        return _photometric(_STRONG) + _geometric(_STRONG)
    if name == "overhead":
        return _photometric(_STANDARD) + _geometric(_STANDARD) + [_Flip(1, _VFLIP), _Rot90()]
    raise ValueError(
        f"augment (--augment) must be one of {AUGMENT_PRESETS}, a Keras layer or a callable; got {name!r}"
    )


def make_augmentation(augment, bounding_box_format="yxyx"):
    """A preset name, a Keras layer or a callable → ``augmentation(image, boxes, rand) →
    (image, boxes, area_scale)`` (module doc), or None for ``"none"``.

    A Keras layer (or ``keras.Sequential`` of them, made with ``bounding_box_format``) is
    called as ``layer({"images": [H, W, 3], "bounding_boxes": {"boxes": [N, 4], "labels":
    [N]}}, training=True)``, boxes in ``bounding_box_format``; it draws from its own
    ``SeedGenerator``, so its output is *not* a function of the pipeline's seed alone. Any
    other callable is called as ``fn(data, seed)`` with the same ``data`` and ``seed`` an
    int64 ``[2]`` tensor for ``tf.random.stateless_*`` (then it is). Either must keep the
    boxes' order and number (a box it removes: label −1 or zero area). Their area change is
    unknown, so only boxes reduced to nothing are dropped after them.
    """
    if isinstance(augment, str):
        steps = preset_steps(augment)
        if not steps:
            return None

        def augmentation(image, boxes, rand):
            images, boxes, area_scale = image[None], boxes[None], 1.0
            for step in steps:
                images, boxes, scale = step(images, boxes, rand)
                area_scale = area_scale * scale
            return tf.clip_by_value(images[0], 0.0, 255.0), boxes[0], tf.cast(area_scale, tf.float32)

        return augmentation
    if not callable(augment):
        preset_steps(augment)  # raises, naming the argument
    is_layer = isinstance(augment, keras.layers.Layer)

    def custom(image, boxes, rand):
        data = {
            "images": image,
            "bounding_boxes": {
                "boxes": to_model_format(boxes, bounding_box_format),
                "labels": tf.zeros(tf.shape(boxes)[:1], tf.int32),
            },
        }
        out = augment(data, training=True) if is_layer else augment(data, _seed(rand, 12))
        moved = from_model_format(tf.cast(out["bounding_boxes"]["boxes"], tf.float32), bounding_box_format)
        tf.debugging.assert_equal(
            tf.shape(moved)[0], tf.shape(boxes)[0], message="augment must keep the number of boxes"
        )
        gone = tf.cast(out["bounding_boxes"]["labels"], tf.int32) < 0
        moved = tf.where(gone[:, None], 0.0, moved)
        return tf.cast(out["images"], tf.float32), moved, None

    return custom


def mark_cut_boxes(boxes, full_area, labels, difficult, min_visible):
    """Apply the cut-box rule → ``(boxes, labels, difficult)``.

    boxes [N, 4] yxyx clipped to the image; full_area [N]: each box's area had nothing been
    cut (None: unknown, only empty boxes are dropped). A box that had an area and has none
    left is removed (with its label and flag); one with less than ``min_visible`` of its area
    left is marked difficult — which training treats as absent (``unpack_targets``), so the
    fragment is neither a positive nor a loss on its own, while evaluation and the batch
    still show it. Boxes that had no area to begin with pass unchanged.
    """
    area = tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    if full_area is None:
        keep = area > 0
        return boxes[keep], labels[keep], difficult[keep]
    had_area = full_area > 0
    keep = ~(had_area & (area <= 0))
    cut = had_area & (area < min_visible * full_area)
    difficult = tf.where(cut, tf.ones_like(difficult), difficult)
    return boxes[keep], labels[keep], difficult[keep]
