"""The SavedModel's signatures, on the frozen detector (``rfcn_tf.export.frozen``).

All outputs are dense and padded to ``M = config.max_detections`` rows. Every signature
runs the model's own graph, which resizes each image to its own scale (``min_side`` /
``max_side``), so a client may send any image size.

``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` RGB (one size per request).
``serving_bytes``: ``encoded_images`` string ``[B]``, JPEG/PNG/GIF/BMP bytes; each is
    decoded to RGB (grayscale and RGBA converted; a JPEG at a reduced size when the model
    would shrink it anyway) and the batch zero-padded, every image keeping its own size. An
    image whose header declares more than ``image_io.MAX_IMAGE_PIXELS`` pixels is refused
    before decoding.
    Both return the TF Object Detection API outputs, all float32:
    ``detection_boxes [B, M, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` (divided by the
    image's height/width; always yxyx), ``detection_scores [B, M]``,
    ``detection_classes [B, M]`` **0-based** user class ids (line numbers of labels.txt,
    from 0; the OD API's are 1-based) and ``num_detections [B]``. Rows past
    ``num_detections`` are padding: boxes 0, scores 0, classes -1.
``predict_padded``: ``images`` float32 ``[B, H, W, 3]`` 0..255 zero-padded, ``image_sizes``
    int32 ``[B, 2]`` true (height, width) → the model's own predict contract: ``boxes [B, M,
    4]`` absolute pixels of the inputs, yxyx, ``confidence [B, M]``, ``labels [B, M]`` int32
    (-1 padding), ``num_detections [B]`` int32. ``rfcn_tf.load_detector`` uses it.

Bad requests (an empty batch, an empty string, bytes that are no image, a 0-pixel side, an
image declaring too many pixels) fail with ``InvalidArgumentError`` saying what was wrong.
"""

import tensorflow as tf

from rfcn_tf.export.files import PADDED_SIGNATURE
from rfcn_tf.image_io import decode_image
from rfcn_tf.image_scale import target_size
from rfcn_tf.inputs import from_model_format

SERVING_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def build_signatures(detector):
    """``{name: tf.function}`` of the three signatures above, on a ``FrozenDetector``."""
    config = detector.config

    def model_contract(out):
        return {
            "boxes": from_model_format(tf.cast(out["boxes"], tf.float32), config.bounding_box_format),
            "confidence": tf.cast(out["confidence"], tf.float32),
            "labels": tf.cast(out["labels"], tf.int32),
            "num_detections": tf.cast(out["num_detections"], tf.int32),
        }

    def serving_outputs(out, image_sizes):
        out = model_contract(out)
        scale = tf.cast(tf.tile(image_sizes, [1, 2]), tf.float32)[:, None, :]
        return {
            "detection_boxes": out["boxes"] / scale,
            "detection_scores": out["confidence"],
            "detection_classes": tf.cast(out["labels"], tf.float32),
            "num_detections": tf.cast(out["num_detections"], tf.float32),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
            tf.TensorSpec([None, 2], tf.int32, name="image_sizes"),
        ]
    )
    def predict_padded(images, image_sizes):
        return model_contract(detector.detect_padded(images, image_sizes))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serving_default(images):
        shape = tf.shape(images)
        check = tf.debugging.assert_positive(
            shape[1:3], message="images must be at least 1x1 pixels; got height, width"
        )
        with tf.control_dependencies([check]):
            images = tf.cast(images, tf.float32)
        # One size per request: the batch runs as one, no per-image path.
        return serving_outputs(detector.detect(images), tf.tile(shape[None, 1:3], [shape[0], 1]))

    model_size = target_size(config.min_side, config.max_side)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded_images")])
    def serving_bytes(encoded_images):
        def decode(data):
            image, _ = decode_image(data, target_size=model_size)
            return tf.RaggedTensor.from_tensor(tf.cast(image, tf.float32), ragged_rank=1), tf.shape(image)[:2]

        check = tf.debugging.assert_positive(
            tf.shape(encoded_images)[0], message="empty batch: encoded_images needs at least one image"
        )
        with tf.control_dependencies([check]):
            encoded_images = tf.identity(encoded_images)
        images, sizes = tf.map_fn(
            decode,
            encoded_images,
            fn_output_signature=(
                tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1),
                tf.TensorSpec([2], tf.int32),
            ),
        )
        images = images.to_tensor(shape=[None, None, None, 3])
        return serving_outputs(detector.detect_padded(images, sizes), sizes)

    return {
        "serving_default": serving_default,
        "serving_bytes": serving_bytes,
        PADDED_SIGNATURE: predict_padded,
    }
