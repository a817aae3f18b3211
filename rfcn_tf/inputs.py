"""The model's input and target contracts: unpacking, validation and box formats."""

import numpy as np
import tensorflow as tf
from keras.utils import bounding_boxes


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
    if tf.as_dtype(images.dtype).is_floating:
        finite = np.isfinite(np.asarray(images))
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"images contain NaN or Inf (first at [image, row, column, channel] = {list(index)})"
            )


def check_image_spec(shape, dtype):
    """ValueError unless ``shape`` is ``[batch, height, width, 3]`` (batch not 0) and
    ``dtype`` numeric."""
    shape = tf.TensorShape(shape)
    if shape.rank != 4 or shape[-1] not in (3, None):
        hint = "; one image needs a batch axis: images[None]" if shape.rank == 3 else ""
        raise ValueError(
            f"RFCN expects RGB images of shape [batch, height, width, 3]; got shape {shape}{hint}"
        )
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        raise ValueError(f"images must be uint8 or float in 0..255; got dtype {dtype}") from None
    if not (dtype.is_floating or dtype.is_integer):
        raise ValueError(f"images must be uint8 or float in 0..255; got dtype {dtype.name}")
    if shape[0] == 0:
        raise ValueError("empty batch: RFCN needs at least one image")


def check_images(images, image_sizes=None):
    """``(images [B, H, W, 3], image_sizes [B, 2] or None)`` → the same as tensors, sizes
    defaulting to the full size (int32).

    Raises ValueError for a wrong rank, channel count or dtype; asserts (at run time) that
    float images are finite and that every true size is positive and fits the batch.
    """
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
    """``detect(images [B, H, W, 3]) → detections`` on a batch that may be zero padded:
    the whole batch at once when every image fills it, else image by image (cropped to its
    ``image_sizes``), so that an image's detections do not depend on what it is batched with
    (zero padding would reach its border convolutions). Outputs padded to ``max_detections``."""
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
    padded rows become zero boxes. Raises (at run
    time) on labels outside -1..num_classes-1 and on non-finite real boxes.
    """
    if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
        raise ValueError("training targets must be a dict with 'boxes' [B, N, 4] and 'labels' [B, N]")
    boxes = tf.cast(y["boxes"], tf.float32)
    labels = tf.cast(y["labels"], tf.int32)
    if boxes.shape.rank != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"target boxes must have shape [B, N, 4]; got {boxes.shape}")
    if labels.shape.rank != 2:
        raise ValueError(f"target labels must have shape [B, N]; got {labels.shape}")
    if "difficult" in y:
        labels = tf.where(tf.cast(y["difficult"], tf.bool), -1, labels)
    real = labels >= 0
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
        boxes = from_model_format(boxes, box_format)
        ordered = tf.concat(
            [tf.minimum(boxes[..., :2], boxes[..., 2:]), tf.maximum(boxes[..., :2], boxes[..., 2:])], axis=-1
        )
        return tf.where(real[..., None], ordered, 0.0), labels


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
