"""Training and evaluation batches without TensorFlow: a ``keras.utils.PyDataset``.

:class:`DetectionDataset` reads the sources :func:`~rfcn_tf.data.load_examples` reads — a
Pascal-VOC folder, a COCO folder or JSON file, the synthetic ``rfcn_shapes`` (drawn by
numpy and Pillow with the TFDS builder's generator: example ``i`` of a split is the same
image) — with numpy and Pillow, and gives the batches :func:`~rfcn_tf.data.make_pipeline`
gives (its module doc)::

    inputs  = {"images": float32 [B, Hpad, Wpad, 3] in 0..255, zero padded bottom/right,
               "image_sizes": int32 [B, 2] true (height, width) after resizing}
    targets = {"boxes": float32 [B, N, 4] in bounding_box_format, -1 padded,
               "labels": int32 [B, N] -1 padded, "difficult": int32 [B, N] 0 padded,
               "scales": float32 [B] resized = original × scale}

The same resize rule (``rfcn_tf.image_scale``; bilinear, antialiased when shrinking — here
Pillow's, which differs from TensorFlow's by float rounding) and boxes scaled by the same
per-axis ratios; in training the same crops of large images (``crops.py``'s rule) and
horizontal flips (``augment="flip"``, the default; the other presets need ``make_pipeline``).

Random draws (order, scale, crop, flip) come from ``numpy.random.default_rng([seed, epoch,
…])``: an epoch is a function of the seed and the epoch number, whatever the workers; the epoch
advances in ``on_epoch_end``. They are not TensorFlow's draws, so a seeded ``make_pipeline``
and a seeded ``DetectionDataset`` shuffle and flip differently. ``model.fit(shuffle=True)``
(its default) also shuffles the order of a PyDataset's batches, with Python's ``random``.
"""

import logging
import numbers
import os

import keras
import numpy as np
from PIL import Image

from rfcn_tf.config import BOX_FORMATS
from rfcn_tf.data import shapes
from rfcn_tf.data.folder_records import clean_box_array, clean_records, is_path, read_folder

logger = logging.getLogger("rfcn_tf.data")

MAX_IMAGE_PIXELS = 2**27  # image_io.MAX_IMAGE_PIXELS: larger files are refused unread
AUTO_FACTOR = 2  # crops.AUTO_FACTOR
OBJECT_PROBABILITY = 0.5  # crops.OBJECT_PROBABILITY
SHAPES = "rfcn_shapes"
# Every preset of ``augment.py`` (defined here, where building a parser needs no TensorFlow);
# this dataset runs the first two, make_pipeline all of them.
AUGMENT_PRESETS = ("none", "flip", "standard", "strong", "overhead")
PY_AUGMENT_PRESETS = AUGMENT_PRESETS[:2]


class FolderExamples:
    """Common examples of a VOC folder or COCO JSON (``folder_records.Records``), read by Pillow."""

    def __init__(self, records):
        self.records = records
        self._warned = set()

    def __len__(self):
        return len(self.records)

    def max_boxes(self):
        """The most boxes an example has (read from the annotations, no image decoded)."""
        return max(np.asarray(b).size // 4 for b in self.records.boxes)

    def __getitem__(self, i):
        r = self.records
        image = read_rgb(r.paths[i])
        boxes, keep = clean_box_array(r.boxes[i].reshape(-1, 4), *image.shape[:2])
        if not keep.all() and r.image_ids[i] not in self._warned:
            self._warned.add(r.image_ids[i])
            logger.warning(
                "%s: %d empty boxes dropped (zero area after clipping to the image)",
                r.image_ids[i],
                int((~keep).sum()),
            )
        return {
            "image": image,
            "boxes": boxes[keep],
            "labels": r.labels[i][keep].astype(np.int32),
            "difficult": r.difficult[i][keep].astype(bool),
            "image_id": r.image_ids[i],
        }


class ShapesExamples:
    """One split of ``rfcn_shapes`` drawn on the fly, as the TFDS builder draws it.

    config: a name of ``shapes.CONFIGS`` ("default", "tiny") or a dict of its fields.
    """

    def __init__(self, config="default", split="train"):
        if isinstance(config, str):
            if config not in shapes.CONFIGS:
                raise ValueError(f"rfcn_shapes has configurations {sorted(shapes.CONFIGS)}, got {config!r}")
            config = shapes.CONFIGS[config]
        unknown = set(config) - set(shapes.CONFIGS["default"])
        if unknown:
            raise ValueError(f"unknown rfcn_shapes fields {sorted(unknown)}")
        if split not in shapes.SPLITS:
            raise ValueError(f"rfcn_shapes has splits {shapes.SPLITS}, got {split!r}")
        self.config = type("ShapesConfig", (), {**shapes.CONFIGS["default"], **config})
        self.split = split
        self.count = getattr(self.config, f"num_{split}")

    def __len__(self):
        return self.count

    def max_boxes(self):
        """The most boxes an example can have (the configuration's ``max_objects``)."""
        return self.config.max_objects

    def __getitem__(self, i):
        drawn = shapes.render_split_example(self.config, shapes.SPLITS.index(self.split), i)
        return {
            "image": drawn["image"],
            "boxes": drawn["boxes"],
            "labels": drawn["labels"],
            "difficult": np.zeros(len(drawn["labels"]), bool),
            "image_id": f"{self.split}_{i:06d}",  # the TFDS key and image/filename
        }


def read_rgb(path, max_pixels=MAX_IMAGE_PIXELS):
    """An image file → uint8 ``[H, W, 3]`` (``read_image`` at full size)."""
    return read_image(path, max_pixels=max_pixels)[0]


def read_image(path, target_size=None, max_pixels=MAX_IMAGE_PIXELS):
    """``image_io.read_image`` with Pillow: an image file → ``(uint8 [H', W', 3], (height,
    width) of the file)``, gray repeated, alpha dropped, first frame, EXIF orientation not
    applied (as TensorFlow's decoders). The header's size is checked against ``max_pixels``
    before any pixel is decoded (and Pillow's own decompression-bomb limit holds).
    target_size: None, or ``(height, width) → (h, w)``, the size the caller resizes to: a
    JPEG is then decoded at the smallest of 1/1, 1/2, 1/4, 1/8 still at least that size
    (Pillow's ``draft``). Raises ValueError naming the file if it cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(
                    f"{path}: image declares {width}x{height} pixels, more than the limit of {max_pixels}"
                )
            if target_size is not None and image.format == "JPEG":
                h, w = target_size(height, width)
                image.draft("RGB", (int(w), int(h)))
            return np.asarray(image.convert("RGB"), np.uint8), (height, width)
    except (OSError, Image.DecompressionBombError, SyntaxError) as error:
        raise ValueError(
            f"{path}: could not read or decode the image file ({error}); expected a readable "
            "JPEG, PNG, GIF, BMP or WebP file"
        ) from None


def read_examples(source, split=None, *, image_dir=None):
    """Any source but TFDS → ``(examples, class_names)``, numpy only.

    source: ``"rfcn_shapes"`` / ``"rfcn_shapes/tiny"`` (``split`` "train", "validation" or
    "test"), a Pascal-VOC folder, a COCO folder or a COCO JSON file (as ``load_examples``).
    examples: a sequence (``len``, ``[i]``) of common examples as numpy arrays, ``image_id``
    a str. A TFDS name raises a ``ModuleNotFoundError`` without TensorFlow, a ValueError with it.
    """
    source = os.fspath(source)
    if source == SHAPES or source.startswith(SHAPES + "/"):
        config = source.partition("/")[2] or "default"
        return ShapesExamples(config, split or "train"), list(shapes.CLASS_NAMES)
    if not is_path(source):
        from rfcn_tf import _optional

        if not _optional.has_tensorflow():
            raise _optional.needs_tensorflow(f"the TFDS dataset {source!r}")
        raise ValueError(
            f"{source!r} is neither an existing file or folder nor rfcn_shapes; for a TFDS "
            "dataset use rfcn_tf.data.load_examples and make_pipeline"
        )
    path = os.path.expanduser(source)
    records, class_names = read_folder(path, split, image_dir)
    if len(records) == 0:
        raise ValueError("no images to read: the annotations list no images")
    if not class_names:
        raise ValueError(f"{source}: no class names found (no labelled objects in the annotations)")
    return FolderExamples(clean_records(records, path)), class_names


def resized_size(size, min_side, max_side):
    """numpy twin of ``image_scale.resized_size`` (float32 arithmetic, round half to even)."""
    hw = np.asarray(size, np.float32)
    scale = np.minimum(np.float32(min_side) / hw.min(), np.float32(max_side) / hw.max())
    return np.maximum(np.round(hw * scale).astype(np.int32), 1)


def resize_image(image, size):
    """``[H, W, 3]`` → float32 ``[size[0], size[1], 3]``: Pillow's bilinear filter, which
    widens to the scale when shrinking (antialiased, as ``image_scale.resize_image``); run in
    float ("F" mode) so no rounding to uint8 happens; unchanged at its own size."""
    image = np.asarray(image, np.float32)
    height, width = (int(s) for s in size)
    if image.shape[:2] == (height, width):
        return image
    channels = [
        np.asarray(Image.fromarray(image[..., c]).resize((width, height), Image.BILINEAR), np.float32)
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _crop_window(size, crop, min_side, max_side):
    """``crops.crop_window``: the window's (height, width) int [2]."""
    if crop == "auto":
        if max(size) <= AUTO_FACTOR * max_side:
            return np.asarray(size)
        window = (max_side, min_side) if size[0] > size[1] else (min_side, max_side)
    else:
        window = (crop, crop)
    return np.minimum(window, size)


def _random_crop(image, boxes, window, rng):
    """``crops.random_crop`` with numpy draws: a window holding a random box's centre with
    probability ½ (when there are boxes), anywhere otherwise; boxes moved and clipped."""
    size = np.asarray(image.shape[:2])
    room = size - window
    u = rng.random(4)
    start = np.floor(u[:2] * (room + 1)).astype(int)
    if len(boxes) and u[3] < OBJECT_PROBABILITY:
        box = boxes[min(int(u[2] * len(boxes)), len(boxes) - 1)]
        centre = np.floor((box[:2] + box[2:]) / 2).astype(int)
        low = np.clip(centre - window + 1, 0, room)
        high = np.clip(centre, 0, room)
        start = low + np.floor(u[:2] * (high - low + 1)).astype(int)
    image = image[start[0] : start[0] + window[0], start[1] : start[1] + window[1]]
    offset = np.tile(start, 2).astype(np.float32)
    return image, np.clip(boxes - offset, 0.0, np.tile(window, 2).astype(np.float32))


def _mark_cut_boxes(boxes, full_area, labels, difficult, min_visible):
    """``augment.mark_cut_boxes``: emptied boxes removed, those under ``min_visible`` of their
    area → difficult."""
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    had_area = full_area > 0
    keep = ~(had_area & (area <= 0))
    difficult = np.where(had_area & (area < min_visible * full_area), 1, difficult)
    return boxes[keep], labels[keep], difficult[keep]


def _check_sides(min_side, max_side):
    sides = (min_side,) if isinstance(min_side, numbers.Integral) else tuple(min_side)
    if not sides or not all(isinstance(s, numbers.Integral) and s > 0 for s in sides):
        raise ValueError(f"min_side must be a positive int or a non-empty tuple of them, got {min_side!r}")
    if not (isinstance(max_side, numbers.Integral) and max_side > 0):
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    return sides


class DetectionDataset(keras.utils.PyDataset):
    """Batches of a source for ``model.fit`` / ``evaluate`` / ``predict`` on any backend.

    source: a sequence of common examples (:func:`read_examples`), or what
    :func:`read_examples` takes (then ``split`` and ``image_dir`` apply; ``class_names`` is
    set). batch_size, min_side (an int, or a tuple: one drawn per image in training, the
    largest otherwise), max_side, training, bounding_box_format, min_visible: as
    :func:`~rfcn_tf.data.make_pipeline`. augment: "flip" (default) or "none". crop: "auto"
    (default), an int size or None, as ``make_pipeline`` (training only). seed: order and
    draws of every epoch (None: a random one). max_boxes: pad N to this (default: the batch's
    largest). canvas: pad images to this ``(height, width)`` (default: the batch's largest,
    as ``make_pipeline``); a fixed canvas and ``max_boxes`` give every batch one shape, which
    JAX compiles once (``(max_side, max_side)`` holds any image). workers,
    use_multiprocessing, max_queue_size: ``keras.utils.PyDataset``'s.
    """

    def __init__(
        self,
        source,
        batch_size,
        *,
        split=None,
        image_dir=None,
        min_side=600,
        max_side=1000,
        training=False,
        seed=None,
        max_boxes=None,
        canvas=None,
        drop_remainder=False,
        bounding_box_format="yxyx",
        augment="flip",
        crop="auto",
        min_visible=0.5,
        workers=1,
        use_multiprocessing=False,
        max_queue_size=10,
    ):
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        self.class_names = None
        if isinstance(source, (str, os.PathLike)):
            source, self.class_names = read_examples(source, split, image_dir=image_dir)
        sides = _check_sides(min_side, max_side)
        self.sides = sides if training else (max(sides),)
        self.max_side = max_side
        if not (isinstance(batch_size, numbers.Integral) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_boxes is not None and not (isinstance(max_boxes, numbers.Integral) and max_boxes > 0):
            raise ValueError(f"max_boxes must be None or a positive int, got {max_boxes!r}")
        if bounding_box_format not in BOX_FORMATS:
            raise ValueError(f"bounding_box_format must be one of {BOX_FORMATS}, got {bounding_box_format!r}")
        if augment not in PY_AUGMENT_PRESETS:
            raise ValueError(
                f"augment must be 'none' or 'flip' here, got {augment!r}; the other presets "
                "run in rfcn_tf.data.make_pipeline (TensorFlow)"
            )
        if crop is None or crop == "none":
            crop = None
        elif crop != "auto" and not (isinstance(crop, numbers.Integral) and crop > 0):
            raise ValueError(f"crop must be 'auto', 'none'/None or a positive int size; got {crop!r}")
        if not 0 <= min_visible <= 1:
            raise ValueError(f"min_visible must be in 0..1, got {min_visible!r}")
        if len(source) == 0:
            raise ValueError("the source has no examples")
        self.examples = source
        self.batch_size = int(batch_size)
        self.training = training
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.max_boxes = max_boxes
        self.canvas = None if canvas is None else tuple(int(s) for s in canvas)
        self.drop_remainder = drop_remainder
        self.bounding_box_format = bounding_box_format
        self.flip = training and augment == "flip"
        self.crop = crop if training else None
        self.min_visible = min_visible
        self.epoch = 0

    def __len__(self):
        n = len(self.examples)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1

    def order(self):
        """Example indices of this epoch: shuffled by ``[seed, epoch]`` in training."""
        n = len(self.examples)
        if not self.training:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def example(self, index):
        """Example ``index`` of the source, resized (cropped and flipped in training) →
        dict of image float32 [h, w, 3], image_size [2], scale, boxes yxyx, labels, difficult."""
        ex = self.examples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.training else None
        side = self.sides[0] if len(self.sides) == 1 else self.sides[rng.integers(len(self.sides))]
        image = ex["image"]
        boxes = np.asarray(ex["boxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(ex["labels"], np.int32).reshape(-1)
        difficult = np.asarray(ex["difficult"]).reshape(-1).astype(np.int32)
        if self.max_boxes is not None and len(boxes) > self.max_boxes:
            raise ValueError(
                f"example {ex.get('image_id', index)} has {len(boxes)} boxes, "
                f"more than max_boxes = {self.max_boxes}"
            )
        full_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if self.crop is not None:
            window = _crop_window(image.shape[:2], self.crop, side, self.max_side)
            image, boxes = _random_crop(image, boxes, window, rng)
        size = np.asarray(image.shape[:2], np.int32)
        new_size = resized_size(size, side, self.max_side)
        ratios = new_size.astype(np.float32) / size.astype(np.float32)
        image = resize_image(image, new_size)
        boxes = boxes * np.tile(ratios, 2)
        full_area = full_area * ratios[0] * ratios[1]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            boxes = np.stack(
                [boxes[:, 0], new_size[1] - boxes[:, 3], boxes[:, 2], new_size[1] - boxes[:, 1]], -1
            )
        if self.training:
            boxes, labels, difficult = _mark_cut_boxes(boxes, full_area, labels, difficult, self.min_visible)
        return {
            "image": image,
            "image_size": new_size,
            "scale": ratios.min(),
            "boxes": boxes.astype(np.float32),
            "labels": labels,
            "difficult": difficult,
        }

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        order = self.order()[i * self.batch_size : (i + 1) * self.batch_size]
        items = [self.example(int(index)) for index in order]
        height, width = self.canvas or np.max([it["image_size"] for it in items], axis=0)
        n = self.max_boxes if self.max_boxes is not None else max(len(it["boxes"]) for it in items)
        images = np.zeros((len(items), height, width, 3), np.float32)
        boxes = np.full((len(items), n, 4), -1.0, np.float32)
        labels = np.full((len(items), n), -1, np.int32)
        difficult = np.zeros((len(items), n), np.int32)
        for b, it in enumerate(items):
            h, w = it["image_size"]
            if h > height or w > width:
                raise ValueError(f"an image resized to {h}x{w} does not fit canvas {self.canvas}")
            images[b, :h, :w] = it["image"]
            k = len(it["boxes"])
            boxes[b, :k] = it["boxes"]
            labels[b, :k] = it["labels"]
            difficult[b, :k] = it["difficult"]
        if self.bounding_box_format != "yxyx":
            converted = np.asarray(
                keras.utils.bounding_boxes.convert_format(
                    boxes, source="yxyx", target=self.bounding_box_format
                )
            )
            boxes = np.where(boxes < 0, boxes, converted)  # keep the -1 padding
        inputs = {
            "images": images,
            "image_sizes": np.stack([it["image_size"] for it in items]).astype(np.int32),
        }
        targets = {
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
            "scales": np.array([it["scale"] for it in items], np.float32),
        }
        return inputs, targets
