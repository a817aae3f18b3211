"""A frozen detector: the model's inference graph with its weights as constants and every
BatchNorm folded into the convolution before it (``rfcn_tf.export.folding``, which says why
that is faster on a CPU). The result equals the model's to float rounding. It is a snapshot:
weights changed later (more training, ``load_weights``) do not reach it; freeze again. The
SavedModel export serves it.
"""

import tensorflow as tf

from rfcn_tf.export.folding import constant_function
from rfcn_tf.inputs import as_model_inputs, check_image_spec, detect_each_if_padded
from rfcn_tf.model import RFCN


class FrozenDetector(tf.Module):
    """``detector(images [B, H, W, 3] 0..255, image_sizes=None)`` → the model's detections
    dict (``boxes [B, M, 4]`` in ``config.bounding_box_format``, absolute pixels of the
    inputs; ``confidence``, ``labels``, ``num_detections``), as ``model(...)`` returns it.
    A zero-padded batch (``image_sizes`` given) runs image by image, as in the model.

    ``config``: the model's ``RFCNConfig``; ``frozen``: the traced graph (a
    ``ConcreteFunction`` of float32 images ``[B, H, W, 3]``, no variables).
    """

    def __init__(self, model):
        super().__init__(name="rfcn_frozen")
        self.config = model.config
        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
        self.frozen = constant_function(model, spec).get_concrete_function()

    def detect(self, images):
        """An unpadded float32 batch ``[B, H, W, 3]`` → detections (tensors)."""
        return self.frozen(images)

    def detect_padded(self, images, image_sizes):
        """float32 images zero padded beyond ``image_sizes [B, 2]`` → detections (tensors)."""
        return detect_each_if_padded(self.detect, images, image_sizes, self.config.max_detections)

    def __call__(self, images, image_sizes=None):
        inputs = as_model_inputs(
            images if image_sizes is None else {"images": images, "image_sizes": image_sizes}
        )
        images = tf.convert_to_tensor(inputs["images"])
        check_image_spec(images.shape, images.dtype)
        images = tf.cast(images, tf.float32)
        if inputs["image_sizes"] is None:
            return self.detect(images)
        return self.detect_padded(images, inputs["image_sizes"])


def freeze_for_inference(model):
    """``model`` (an ``RFCN``) → a ``FrozenDetector``: the same detections, from a graph
    whose weights are constants and whose BatchNorms are folded (module doc)."""
    if not isinstance(model, RFCN):
        raise TypeError(f"freeze_for_inference needs an RFCN model; got {type(model).__name__}")
    return FrozenDetector(model)
