"""Random crops of large training images at native resolution.

A model that resizes a 2500×2300 aerial photo to its 320 px scale shrinks a 36 px car to
5 px. ``crop`` in :func:`make_pipeline` instead cuts a window out of the image at its own
resolution, which the resize then leaves alone (or scales, for an explicit size):

- ``"auto"`` (the default): an image whose longer side is more than ``AUTO_FACTOR`` (2) ×
  ``max_side`` — one the resize would shrink to less than half — becomes a random window of
  the model's input size: ``min_side × max_side`` (the image's shorter side along its shorter
  axis; the largest image the resize rule leaves unchanged), so objects keep their pixel
  size. Smaller images are untouched. With several ``min_side`` values, the one drawn for
  the example.
- an int ``SIZE``: every image with a side longer than ``SIZE`` becomes a random window of at
  most ``SIZE × SIZE``, then the usual resize applies.
- ``None`` / ``"none"``: no crops.

A model trained on native-resolution crops expects native-resolution objects: run it on
tiles of the large images too, not on the whole image resized.

Windows start at whole pixels. With probability ``OBJECT_PROBABILITY`` (½) the window is
placed so that it contains the centre of one of the image's boxes (chosen uniformly),
anywhere in the window — a photo of a few tiny objects then does not give mostly empty
crops — otherwise anywhere in the image. Cut boxes follow the augmentation's rule
(``augment.mark_cut_boxes``).
"""

import numbers

import tensorflow as tf

AUTO_FACTOR = 2
OBJECT_PROBABILITY = 0.5
_CROP = 2  # stream id of the stateless draws (augment.py lists them)


def check_crop(crop):
    """``crop`` argument → ``"auto"``, a positive int or None; raises naming it."""
    if crop is None or crop == "none":
        return None
    if crop == "auto":
        return crop
    if isinstance(crop, numbers.Integral) and not isinstance(crop, bool) and crop > 0:
        return int(crop)
    raise ValueError(f"crop (--crop) must be 'auto', 'none'/None or a positive int size; got {crop!r}")


def crop_window(size, crop, min_side, max_side):
    """(height, width) int32 [2] → the window's (height, width), or the image's own size
    when ``crop`` leaves it whole."""
    if crop == "auto":
        longer_is_height = size[0] > size[1]
        window = tf.where(longer_is_height, tf.stack([max_side, min_side]), tf.stack([min_side, max_side]))
        window = tf.where(tf.reduce_max(size) > AUTO_FACTOR * max_side, window, size)
    else:
        window = tf.fill([2], crop)
    return tf.minimum(tf.cast(window, tf.int32), size)


def random_crop(image, boxes, window, rand):
    """A random ``window``-sized crop of ``image`` [H, W, 3] (module doc) → ``(image, boxes)``,
    boxes [N, 4] yxyx moved into the window and clipped to it (not yet dropped or marked)."""
    size = tf.shape(image)[:2]
    u = tf.random.stateless_uniform([4], tf.stack([rand, tf.constant(_CROP, tf.int64)]))
    room = size - window  # the start's range is 0..room
    anywhere = tf.cast(tf.floor(u[:2] * tf.cast(room + 1, tf.float32)), tf.int32)
    n = tf.shape(boxes)[0]
    pick = tf.minimum(tf.cast(u[2] * tf.cast(n, tf.float32), tf.int32), tf.maximum(n - 1, 0))
    box = tf.gather(tf.concat([boxes, tf.zeros([1, 4])], 0), pick)  # a zero row when n = 0
    centre = tf.cast(tf.floor((box[:2] + box[2:]) / 2), tf.int32)
    low = tf.clip_by_value(centre - window + 1, 0, room)  # windows holding the centre pixel
    high = tf.clip_by_value(centre, 0, room)
    around = low + tf.cast(tf.floor(u[:2] * tf.cast(high - low + 1, tf.float32)), tf.int32)
    start = tf.where((u[3] < OBJECT_PROBABILITY) & (n > 0), around, anywhere)
    image = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([window, [-1]], 0))
    offset = tf.cast(tf.tile(start, [2]), tf.float32)
    limit = tf.cast(tf.tile(window, [2]), tf.float32)
    return image, tf.clip_by_value(boxes - offset, 0.0, limit)
