"""The model's input and target contracts: unpacking, validation and box formats.

Shape and dtype checks run when the graph is built, on every backend. Value checks (NaN,
true sizes, label ranges) are graph-time asserts under TensorFlow; under JAX and PyTorch
they run eagerly before the graph where the values are at hand (``check_predict_input``,
``check_images`` on concrete sizes) — a jitted JAX step cannot assert on values.
``detect_each_if_padded`` is TensorFlow only (other backends split a padded batch in Python).
"""

import keras
import numpy as np
from keras import ops
from keras.utils import bounding_boxes

from rfcn_tf.ops import on_tensorflow


def pack_images(images):
    """A list of ``[H_i, W_i, 3]`` RGB images → ``{"images": [B, H, W, 3] float32 (zero
    padded at the bottom/right), "image_sizes": [B, 2] int32}`` for ``model.predict``."""
    arrays = [np.asarray(image) for image in images]
    if not arrays:
        raise ValueError("pack_images needs at least one image")
    for i, a in enumerate(arrays):
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"image {i} has shape {a.shape}; expected [height, width, 3] RGB")
    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    batch = np.zeros((len(arrays), height, width, 3), np.float32)
    for i, a in enumerate(arrays):
        batch[i, : a.shape[0], : a.shape[1]] = a
    sizes = np.array([a.shape[:2] for a in arrays], np.int32)
    return {"images": batch, "image_sizes": sizes}


def check_predict_input(inputs):
    """``inputs`` (``as_model_inputs``'s dict) before Keras's ``predict`` loop, which cuts
    arrays into batches of 32 (a wrong shape would be reported as the slice's) and runs the
    graph (NaN or Inf would surface at the end of a long trace): ValueError naming the shape
    and dtype passed, or the first non-finite value. Datasets are checked in the graph."""
    images = inputs["images"]
    if not (hasattr(images, "shape") and hasattr(images, "dtype")):
        return
    check_image_spec(images.shape, images.dtype)
    if _dtype_kind(images.dtype) == "float":
        values = images if isinstance(images, np.ndarray) else ops.convert_to_numpy(images)
        finite = np.isfinite(values)
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"images contain NaN or Inf (first at [image, row, column, channel] = {list(index)})"
            )


def check_targets(y, num_classes):
    """Training targets given as arrays (``fit(x, y)``, ``train_on_batch``), before the step:
    ValueError naming the first label outside -1..num_classes-1 or the first real box with a
    NaN or Inf, as [image, row]. Datasets and generators are checked in TensorFlow's graph
    (``unpack_targets``); a jitted JAX step cannot raise, so this is their only check there."""
    if not isinstance(y, dict) or not all(k in y and hasattr(y[k], "shape") for k in ("boxes", "labels")):
        return
    labels = np.asarray(ops.convert_to_numpy(y["labels"]))
    boxes = np.asarray(ops.convert_to_numpy(y["boxes"]), np.float64)
    if labels.ndim != 2 or boxes.ndim != 3 or boxes.shape[:2] != labels.shape:
        return  # unpack_targets reports the shapes
    fractional = labels != np.round(labels)
    if fractional.any():
        index = _first(fractional)
        raise ValueError(
            f"target labels must be integers; got {labels[index]} at [image, row] = {list(index)}"
        )
    bad = (labels < -1) | (labels >= num_classes)
    if bad.any():
        index = _first(bad)
        raise ValueError(
            f"target labels must be in 0..{num_classes - 1} (or -1 for padding); got "
            f"{labels[index]:g} at [image, row] = {list(index)}"
        )
    broken = (labels >= 0) & ~np.isfinite(boxes).all(-1)
    if broken.any():
        index = _first(broken)
        raise ValueError(
            f"target boxes contain NaN or Inf: {boxes[index].tolist()} at [image, row] = {list(index)}"
        )


def _first(mask):
    """The index (a tuple of ints) of ``mask``'s first True."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def check_image_spec(shape, dtype):
    """ValueError unless ``shape`` is ``[batch, height, width, 3]`` (batch not 0) and
    ``dtype`` numeric."""
    dims = _dims(shape)
    if dims is None or len(dims) != 4 or dims[-1] not in (3, None):
        hint = "; one image needs a batch axis: images[None]" if dims is not None and len(dims) == 3 else ""
        shown = "<unknown>" if dims is None else str(dims)
        raise ValueError(
            f"RFCN expects RGB images of shape [batch, height, width, 3]; got shape {shown}{hint}"
        )
    kind = _dtype_kind(dtype)
    if kind is None:
        name = getattr(dtype, "name", dtype)
        raise ValueError(f"images must be uint8 or float in 0..255; got dtype {name}")
    if dims[0] == 0:
        raise ValueError("empty batch: RFCN needs at least one image")


def _dims(shape):
    """A shape (tuple, ``tf.TensorShape``, ``torch.Size``) as a tuple of ints and None;
    None when its rank is unknown."""
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def _dtype_kind(dtype):
    """ "float", "int" (signed or unsigned) or None (bool, strings, anything else)."""
    try:
        name = keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError, AttributeError):
        return None
    if name.startswith(("float", "bfloat")):
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    return None


def check_images(images, image_sizes=None):
    """``(images [B, H, W, 3], image_sizes [B, 2] or None)`` → the same as tensors, sizes
    defaulting to the full size (int32).

    Raises ValueError for a wrong rank, channel count or dtype. Under TensorFlow, asserts
    (at run time) that float images are finite and that every true size is positive and
    fits the batch; elsewhere the sizes are checked when they are concrete (not inside a
    jitted JAX step), and the pixels by ``check_predict_input``.
    """
    if on_tensorflow():
        return _check_images_tensorflow(images, image_sizes)
    images = ops.convert_to_tensor(images)
    check_image_spec(images.shape, images.dtype)
    batch, height, width, _ = ops.shape(images)
    if height == 0 or width == 0:
        raise ValueError("images must be at least 1x1 pixels")
    if image_sizes is None:
        return images, ops.broadcast_to(ops.convert_to_tensor([[height, width]], "int32"), (batch, 2))
    image_sizes = ops.cast(image_sizes, "int32")
    try:
        sizes = np.asarray(ops.convert_to_numpy(image_sizes))
    except Exception:  # a tracer inside jax.jit: no values to check
        return images, image_sizes
    if np.any(sizes > [height, width]):
        raise ValueError("image_sizes must not exceed the padded image height/width")
    if np.any(sizes <= 0):
        raise ValueError("image_sizes must be positive")
    return images, image_sizes


def _check_images_tensorflow(images, image_sizes):
    """``check_images`` under TensorFlow: the value checks as graph asserts."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    check_image_spec(images.shape, images.dtype)
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_equal(shape[-1], 3, message="RFCN expects 3-channel RGB images"),
        tf.debugging.assert_positive(shape[0], message="empty batch: RFCN needs at least one image"),
        tf.debugging.assert_positive(shape[1:3], message="images must be at least 1x1 pixels"),
    ]
    if images.dtype.is_floating:
        checks.append(tf.debugging.assert_all_finite(images, "images contain NaN or Inf"))
    if image_sizes is None:
        image_sizes = tf.tile(shape[None, 1:3], [shape[0], 1])
    else:
        image_sizes = tf.cast(image_sizes, tf.int32)
        checks.append(
            tf.debugging.assert_less_equal(
                image_sizes,
                shape[None, 1:3],
                message="image_sizes must not exceed the padded image height/width",
            )
        )
        checks.append(tf.debugging.assert_positive(image_sizes, message="image_sizes must be positive"))
    with tf.control_dependencies(checks):
        return tf.identity(images), tf.identity(image_sizes)


def detect_each_if_padded(detect, images, image_sizes, max_detections):
    """TensorFlow only. ``detect(images [B, H, W, 3]) → detections`` on a batch that may be zero padded:
    the whole batch at once when every image fills it, else image by image (cropped to its
    ``image_sizes``), so that an image's detections do not depend on what it is batched with
    (zero padding would reach its border convolutions). Outputs padded to ``max_detections``."""
    import tensorflow as tf

    signature = {
        "boxes": tf.TensorSpec([max_detections, 4], tf.float32),
        "confidence": tf.TensorSpec([max_detections], tf.float32),
        "labels": tf.TensorSpec([max_detections], tf.int32),
        "num_detections": tf.TensorSpec([], tf.int32),
    }

    def one(args):
        image, size = args
        return {key: value[0] for key, value in detect(image[None, : size[0], : size[1]]).items()}

    images, image_sizes = check_images(images, image_sizes)
    padded = tf.reduce_any(image_sizes != tf.shape(images)[None, 1:3])
    return tf.cond(
        padded,
        lambda: tf.map_fn(one, (images, image_sizes), fn_output_signature=signature),
        lambda: detect(images),
    )


def as_model_inputs(inputs):
    """images, ``{"images"[, "image_sizes"]}`` or a list of ``[H, W, 3]`` images of any
    sizes → ``{"images", "image_sizes"}`` (``image_sizes`` None = every image full size)."""
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"input dict needs an 'images' key; got keys {sorted(inputs)}")
        unknown = set(inputs) - {"images", "image_sizes"}
        if unknown:
            raise ValueError(f"unknown input keys {sorted(unknown)}; expected 'images' and 'image_sizes'")
        return {"images": inputs["images"], "image_sizes": inputs.get("image_sizes")}
    if isinstance(inputs, (list, tuple)):
        if inputs and all(np.ndim(i) == 3 for i in inputs):
            return pack_images(inputs)
        raise ValueError(
            "a list of inputs must hold [height, width, 3] images "
            "(rfcn_tf.pack_images batches images of different sizes)"
        )
    return {"images": inputs, "image_sizes": None}


def unpack_targets(y, num_classes, box_format="yxyx"):
    """Training targets → ``(boxes [B, N, 4] yxyx, labels [B, N] int32)``.

    ``y = {"boxes": [B, N, 4], "labels": [B, N]}`` padded with label -1, optionally with
    ``"difficult"`` [B, N]: difficult (VOC) or crowd (COCO) objects are left out of
    training, as in py-faster-rcnn. Inverted boxes are repaired by ordering their corners;
    padded rows become zero boxes. Under TensorFlow, raises (at run time) on labels outside
    -1..num_classes-1 and on non-finite real boxes; target arrays given to ``fit`` and
    ``train_on_batch`` are checked before the step on every backend (``check_targets``).
    """
    if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
        raise ValueError("training targets must be a dict with 'boxes' [B, N, 4] and 'labels' [B, N]")
    boxes = ops.cast(y["boxes"], "float32")
    labels = ops.cast(y["labels"], "int32")
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"target boxes must have shape [B, N, 4]; got {boxes.shape}")
    if len(labels.shape) != 2:
        raise ValueError(f"target labels must have shape [B, N]; got {labels.shape}")
    if "difficult" in y:
        labels = ops.where(ops.cast(y["difficult"], "bool"), -1, labels)
    real = labels >= 0
    if on_tensorflow():
        boxes, labels = _assert_targets(boxes, labels, real, num_classes)
    boxes = from_model_format(boxes, box_format)
    ordered = ops.concatenate(
        [ops.minimum(boxes[..., :2], boxes[..., 2:]), ops.maximum(boxes[..., :2], boxes[..., 2:])], axis=-1
    )
    return ops.where(real[..., None], ordered, 0.0), labels


def _assert_targets(boxes, labels, real, num_classes):
    """TensorFlow's run-time checks of the targets: ``(boxes, labels)`` made to wait for them."""
    import tensorflow as tf

    checks = [
        tf.debugging.assert_less(
            labels, num_classes, message=f"target labels must be in 0..{num_classes - 1} (or -1 for padding)"
        ),
        tf.debugging.assert_greater_equal(labels, -1, message="target labels below -1"),
        tf.debugging.assert_all_finite(
            tf.where(real[..., None], boxes, 0.0), "target boxes contain NaN or Inf"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(boxes), tf.identity(labels)


def to_model_format(boxes, box_format):
    """yxyx → the user's ``bounding_box_format``."""
    if box_format == "yxyx":
        return boxes
    return bounding_boxes.convert_format(boxes, source="yxyx", target=box_format)


def from_model_format(boxes, box_format):
    """The user's ``bounding_box_format`` → yxyx (tensors or arrays; returns a tensor
    unless nothing needs converting)."""
    if box_format == "yxyx":
        return boxes
    return bounding_boxes.convert_format(boxes, source=box_format, target="yxyx")
