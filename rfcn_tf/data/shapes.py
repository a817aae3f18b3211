"""Drawing of the synthetic ``rfcn_shapes`` images (numpy + PIL, no TensorFlow).

One call to :func:`render_example` draws one square RGB image: a textured background
with unlabelled clutter lines, then 0..``max_objects`` filled shapes of random class,
colour, size, aspect ratio and rotation. Later shapes may hide part of earlier ones;
placement is rejected when any two labelled boxes would overlap with IoU > ``max_iou``
or when a shape would keep less than ``min_visible`` of its pixels visible.

Boxes are computed from each shape's *visible* pixel mask and use the edge convention
of the whole package: a box covering pixel rows ``r0..r1`` and columns ``c0..c1``
(inclusive) is ``[r0, c0, r1 + 1, c1 + 1]`` in absolute pixels.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "star", "ring")
SPLITS = ("train", "validation", "test")

# The named rfcn_shapes configurations (the TFDS builder's and ``py_dataset``'s; see
# ``shapes_builder`` for what each field means).
CONFIGS = {
    "default": {
        "image_size": 192,
        "num_train": 4000,
        "num_validation": 200,
        "num_test": 200,
        "max_objects": 6,
        "empty_every": 10,
        "max_iou": 0.3,
        "seed": 0,
    }
}
CONFIGS["tiny"] = {
    **CONFIGS["default"],
    "image_size": 128,
    "num_train": 16,
    "num_validation": 8,
    "num_test": 8,
    "max_objects": 4,
}

# Object sizes relative to the image side: 20–100 px on a 192 px image (the smallest are
# just over one stride-16 cell: small for the detector, still resolvable).
MIN_SIZE_FRACTION = 20.0 / 192.0
MAX_SIZE_FRACTION = 100.0 / 192.0
MAX_ASPECT = 1.6  # height/width of an object lies in [1/MAX_ASPECT, MAX_ASPECT]
MIN_CONTRAST = 80.0  # RGB distance between an object's colour and what lies under it
PLACEMENT_TRIES = 30


def _unit_outline(label):
    """Polygon(s) of a class in a [-1, 1]² frame: a list of (outer, hole-or-None)."""
    ellipse = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 72, endpoint=False)]
    name = CLASS_NAMES[label]
    if name == "circle":
        return ellipse, None
    if name == "square":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)], None
    if name == "triangle":
        return [(math.cos(a), math.sin(a)) for a in np.radians([-90, 30, 150])], None
    if name == "star":
        angles = np.radians(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return list(zip(radii * np.cos(angles), radii * np.sin(angles))), None
    return ellipse, [(0.55 * x, 0.55 * y) for x, y in ellipse]  # ring


def _place(points, half_h, half_w, angle, cy, cx):
    pts = np.asarray(points, np.float64) * [half_w, half_h]
    c, s = math.cos(angle), math.sin(angle)
    rotated = pts @ np.array([[c, s], [-s, c]])
    return rotated + [cx, cy]  # (x, y) pairs, as PIL wants


def _shape_mask(size, label, half_h, half_w, angle, cy, cx):
    outer, hole = _unit_outline(label)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in _place(outer, half_h, half_w, angle, cy, cx)], fill=1)
    if hole is not None:
        draw.polygon([tuple(p) for p in _place(hole, half_h, half_w, angle, cy, cx)], fill=0)
    return np.asarray(canvas, bool)


def mask_box(mask):
    """Tight edge-convention box ``[r0, c0, r1 + 1, c1 + 1]`` of a non-empty bool mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32)


def _max_pairwise_iou(boxes):
    """Largest IoU between two different boxes of ``[N, 4]`` (0 when N < 2).

    numpy rather than ``rfcn_tf.boxes.iou``: it runs for every placement attempt (tens of
    thousands per build), where the overhead of eager TF calls would dominate.
    """
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    np.fill_diagonal(iou, 0.0)
    return iou.max(initial=0.0)


def _background(rng, size):
    """Gradient, blobs or stripes between random colours, plus Gaussian noise. float [S, S, 3]."""
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    if kind == 0:
        angle = rng.uniform(0, 2 * math.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    elif kind == 1:
        cells = rng.integers(3, 9)
        grid = Image.fromarray((rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8))
        t = np.asarray(grid.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    else:
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.05, 0.3)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
    image = c0.astype(np.float32) + (c1 - c0).astype(np.float32) * t[..., None]
    return image + rng.uniform(4.0, 18.0) * rng.standard_normal(image.shape, np.float32)


def _clutter(rng, image):
    """Unlabelled thin lines and arcs drawn onto a float image (in place)."""
    size = image.shape[0]
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 7)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        width = int(rng.integers(1, 3))
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        if rng.uniform() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
        else:
            box = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
            draw.arc(box, *sorted(float(a) for a in rng.uniform(0, 360, 2)), fill=colour, width=width)
    image[...] = np.asarray(canvas, np.float32)


def _random_colour(rng, under):
    """A colour at least MIN_CONTRAST away from the mean colour ``under`` it."""
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - under) >= MIN_CONTRAST:
            return colour
    return np.where(under > 127, 0.0, 255.0)  # the opposite corner of the RGB cube


def _try_place(rng, size, label, masks, max_iou, min_visible, full_areas):
    """One placement attempt → (full mask, visible masks after it) or None if rejected."""
    min_size, max_size = MIN_SIZE_FRACTION * size, MAX_SIZE_FRACTION * size
    long_side = math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
    aspect = math.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
    height, width = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    height, width = max(height, min_size), max(width, min_size)
    angle = rng.uniform(0, 2 * math.pi) if CLASS_NAMES[label] != "square" else rng.uniform(-0.4, 0.4)
    cy, cx = rng.uniform(0, size, 2)
    mask = _shape_mask(size, label, height / 2, width / 2, angle, cy, cx)
    # Whole shapes only: one touching the border may have been cut by it.
    if not mask.any() or mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        return None
    visible = [m & ~mask for m in masks] + [mask]
    if any(v.sum() < min_visible * a for v, a in zip(visible[:-1], full_areas)):
        return None
    if _max_pairwise_iou(np.stack([mask_box(v) for v in visible])) > max_iou:
        return None
    return mask, visible


def render_example(rng, image_size=192, num_objects=3, max_iou=0.3, min_visible=0.7, first_label=None):
    """Draw one image with up to ``num_objects`` labelled shapes.

    rng: ``numpy.random.Generator``. ``first_label`` fixes the class of the first shape.
    Returns a dict: ``image`` uint8 [S, S, 3]; ``boxes`` float32 [N, 4] absolute yxyx
    (edge convention, tight on the visible pixels); ``labels`` int32 [N] indices into
    ``CLASS_NAMES``; ``masks`` bool [N, S, S] the visible pixels of each shape.
    N ≤ ``num_objects``: a shape that cannot be placed after some tries is left out.
    """
    size = int(image_size)
    image = _background(rng, size)
    _clutter(rng, image)
    masks, labels, full_areas = [], [], []
    for k in range(num_objects):
        label = (
            int(first_label) if k == 0 and first_label is not None else int(rng.integers(len(CLASS_NAMES)))
        )
        for _ in range(PLACEMENT_TRIES):
            placed = _try_place(rng, size, label, masks, max_iou, min_visible, full_areas)
            if placed is not None:
                mask, masks = placed
                labels.append(label)
                full_areas.append(mask.sum())
                colour = _random_colour(rng, image[mask].mean(axis=0))
                image[mask] = colour + 6.0 * rng.standard_normal((mask.sum(), 3), np.float32)
                break
    boxes = np.stack([mask_box(m) for m in masks]) if masks else np.zeros((0, 4), np.float32)
    return {
        "image": np.clip(np.round(image), 0, 255).astype(np.uint8),
        "boxes": boxes.astype(np.float32),
        "labels": np.asarray(labels, np.int32),
        "masks": np.stack(masks) if masks else np.zeros((0, size, size), bool),
    }


def render_split_example(config, split_index, index):
    """Example ``index`` of split ``SPLITS[split_index]`` as :func:`render_example` draws it.

    config: anything with the attributes of a ``CONFIGS`` entry (``RfcnShapesConfig``…).
    """
    rng = np.random.default_rng([config.seed, split_index, index])
    if index % config.empty_every == 0:
        num_objects = 0
    else:
        num_objects = int(rng.integers(1, config.max_objects + 1))
    return render_example(
        rng,
        config.image_size,
        num_objects,
        max_iou=config.max_iou,
        first_label=index % len(CLASS_NAMES),
    )
