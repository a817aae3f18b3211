"""Detection decoding: class scores and box deltas per RoI → dense, padded detections."""

import keras
from keras import ops

from rfcn_tf import boxes as box_ops
from rfcn_tf.inputs import to_model_format
from rfcn_tf.layers import nms


@keras.saving.register_keras_serializable(package="rfcn_tf")
class DetectionDecoder(keras.layers.Layer):
    """RoIs ``[B, R, 4]`` + ``valid [B, R]`` + class logits ``[B, R, C+1]`` + class-agnostic
    deltas ``[B, R, 4]`` (scaled by ``box_std``) → the predict contract:

    ``{"boxes": [B, M, 4] yxyx pixels, "confidence": [B, M], "labels": [B, M] int32 (-1
    padding), "num_detections": [B] int32}`` with M = ``max_detections``.

    Softmax over C+1, decode and clip to each image's true size, per-class NMS at
    ``nms_iou``, scores below ``score_threshold`` dropped, best ``max_detections`` kept.
    ``scales [B, 2]`` (optional; the model's resize, resized = original × scale per axis):
    the boxes are divided by them, so they come out in the original image's pixels.
    The boxes are returned in ``bounding_box_format`` (absolute pixels). ``portable``: the
    per-class NMS as one class-offset NMS per image (``layers.nms.per_class_nms``: TFLite
    built-ins) instead of ``combined_non_max_suppression`` (TensorFlow only: other backends
    run ``rfcn_tf.ops.nms``).
    """

    def __init__(
        self,
        box_std=(0.1, 0.1, 0.2, 0.2),
        nms_iou=0.3,
        score_threshold=0.05,
        max_detections=100,
        bounding_box_format="yxyx",
        portable=False,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float32")  # decoding and NMS in float32 under mixed precision
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.box_std = tuple(float(s) for s in box_std)
        self.nms_iou = float(nms_iou)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.portable = bool(portable)

    def call(self, rois, valid, class_logits, box_deltas, image_sizes, scales=None):
        scores = ops.softmax(ops.cast(class_logits, "float32"), axis=-1)[..., 1:]
        scores = ops.where(valid[..., None], scores, 0.0)
        deltas = ops.cast(box_deltas, "float32")
        boxes = box_ops.clip(box_ops.decode(rois, deltas, self.box_std), image_sizes)
        m = self.max_detections
        boxes, confidence, classes, count = nms.select_per_class(
            boxes, scores, image_sizes, m, self.nms_iou, self.score_threshold, self.portable
        )
        present = ops.arange(m)[None, :] < count[:, None]
        if scales is not None:
            boxes = boxes / ops.tile(ops.cast(scales, "float32"), [1, 2])[:, None, :]
        return {
            "boxes": to_model_format(boxes, self.bounding_box_format),
            "confidence": confidence,
            "labels": ops.where(present, classes, -1),
            "num_detections": count,
        }

    def compute_output_spec(self, rois, valid, class_logits, box_deltas, image_sizes, scales=None):
        # Spelled out: traced symbolically (JAX, PyTorch), the inputs' RoI counts are
        # unrelated unknowns.
        batch, m = rois.shape[0], self.max_detections
        return {
            "boxes": keras.KerasTensor((batch, m, 4), "float32"),
            "confidence": keras.KerasTensor((batch, m), "float32"),
            "labels": keras.KerasTensor((batch, m), "int32"),
            "num_detections": keras.KerasTensor((batch,), "int32"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "box_std": list(self.box_std),
            "nms_iou": self.nms_iou,
            "score_threshold": self.score_threshold,
            "max_detections": self.max_detections,
            "bounding_box_format": self.bounding_box_format,
            "portable": self.portable,
        }
