"""Image-file records (what the folder readers produce) → common examples.

The readers run once, in Python, and fill a :class:`Records`; from there everything is
``tf.data``: files are read and decoded by TF ops in parallel. A file that cannot be
read or decoded (corrupt, truncated, not an image) raises ``InvalidArgumentError``
naming the file when its element is reached.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from rfcn_tf.data.validation import clean_boxes, logger
from rfcn_tf.image_io import MAX_IMAGE_PIXELS, decode_image


@dataclasses.dataclass
class Records:
    """One entry per image. Boxes float32 [n, 4] absolute yxyx pixels (edge convention)."""

    paths: list[str]
    image_ids: list[str]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    difficult: list[np.ndarray]
    # (height, width) the annotation declares, or None; used to clip before decoding.
    sizes: list[tuple[int, int] | None]

    def __len__(self):
        return len(self.paths)


def clean_records(records, source):
    """Sort and clip every box to its declared image size; drop and log the empty ones."""
    counts = np.array([len(b) for b in records.boxes], np.int64)
    if counts.sum() == 0:
        return records
    boxes = np.concatenate(records.boxes).astype(np.float32)
    sizes = np.array([s if s is not None else (np.inf, np.inf) for s in records.sizes], np.float32)
    limits = np.repeat(sizes, counts, axis=0)
    boxes, keep = clean_boxes(boxes, limits[:, 0], limits[:, 1])
    boxes, keep = boxes.numpy(), keep.numpy()
    splits = np.cumsum(counts)[:-1]
    per_image_keep = np.split(keep, splits)
    per_image_boxes = np.split(boxes, splits)
    dropped = [
        (image_id, int((~k).sum())) for image_id, k in zip(records.image_ids, per_image_keep) if not k.all()
    ]
    if dropped:
        total = sum(n for _, n in dropped)
        names = ", ".join(image_id for image_id, _ in dropped[:10]) + (", …" if len(dropped) > 10 else "")
        logger.warning(
            "%s: %d empty boxes dropped (zero area after sorting and clipping) in %d images: %s",
            source,
            total,
            len(dropped),
            names,
        )
    return dataclasses.replace(
        records,
        boxes=[b[k] for b, k in zip(per_image_boxes, per_image_keep)],
        labels=[lab[k] for lab, k in zip(records.labels, per_image_keep)],
        difficult=[d[k] for d, k in zip(records.difficult, per_image_keep)],
    )


def _ragged(arrays, dtype, inner_shape=()):
    lengths = [len(a) for a in arrays]
    flat = np.concatenate(arrays).astype(dtype) if arrays else np.zeros((0,) + inner_shape, dtype)
    return tf.RaggedTensor.from_row_lengths(flat.reshape((-1,) + inner_shape), lengths)


def _decode_or_flag(record):
    """A one-element dataset: the record with its decoded image, or with ``ok`` False."""

    def decode(r):
        image, _ = decode_image(tf.io.read_file(r["path"]))
        return {**r, "image": image, "ok": tf.constant(True)}

    decoded = tf.data.Dataset.from_tensors(record).map(decode).ignore_errors()
    failed = tf.data.Dataset.from_tensors(
        {**record, "image": tf.zeros([0, 0, 3], tf.uint8), "ok": tf.constant(False)}
    )
    return decoded.concatenate(failed).take(1)


def _to_example(r):
    tf.debugging.Assert(
        r["ok"],
        [
            "could not read or decode the image file",
            r["path"],
            "(expected a readable JPEG, PNG, GIF, BMP or WebP file of at most",
            MAX_IMAGE_PIXELS,
            "pixels)",
        ],
    )
    return {
        "image": r["image"],
        "boxes": r["boxes"],
        "labels": r["labels"],
        "difficult": r["difficult"],
        "image_id": r["image_id"],
    }


def records_to_examples(records, shuffle=False, seed=None):
    """Records → ``tf.data.Dataset`` of common examples (+ ``image_id``), decoded in parallel.

    shuffle: reshuffle the whole list of files each epoch (before any file is read).
    """
    if len(records) == 0:
        raise ValueError("no images to read: the annotations list no images")
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "path": tf.constant(records.paths, tf.string),
            "image_id": tf.constant(records.image_ids, tf.string),
            "boxes": _ragged(records.boxes, np.float32, (4,)),
            "labels": _ragged(records.labels, np.int32),
            "difficult": _ragged(records.difficult, bool),
        }
    )
    if shuffle:
        ds = ds.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    # ignore_errors inside a one-element dataset turns a decoding error into a flag that
    # _to_example reports with the file's name; the op's own error does not name it.
    ds = ds.interleave(_decode_or_flag, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(records)))  # interleave loses it
    return ds.map(_to_example, num_parallel_calls=tf.data.AUTOTUNE)
