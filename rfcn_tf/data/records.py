"""Image-file records (what the folder readers produce) → common examples (``tf.data``).

The readers run once, in Python, and fill a ``folder_records.Records``; from there
everything is ``tf.data``: files are read and decoded by TF ops in parallel. A file that cannot be
read or decoded (corrupt, truncated, not an image) raises ``InvalidArgumentError``
naming the file when its element is reached.
"""

import numpy as np
import tensorflow as tf

from rfcn_tf.image_io import MAX_IMAGE_PIXELS, decode_image


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
