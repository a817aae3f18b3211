"""A frozen detector: the model's inference graph with its weights as constants.

TensorFlow's CPU convolutions (oneDNN) put a filter into their blocked layout once and keep
it only when the filter is a constant of the graph. Read from a variable, as in
``model.predict``, a batch of one image runs on the plain layout: 1.6× slower at conv4 and
conv5's shapes, about 20 % on ResNet-50 R-FCN inference (README, "Inference speed").
``freeze(model)`` takes that graph once; the SavedModel export serves it.

It is a snapshot: weights changed later (more training, ``load_weights``) do not reach it;
freeze again. Freezing a ResNet-50 model takes about 10 s on two cores.
"""

import tensorflow as tf
# TF 2 has no public freezing API; TF's own converters (TFLite) use this one.
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from rfcn_tf.inputs import as_model_inputs, check_image_spec, detect_each_if_padded
from rfcn_tf.model import RFCN


class FrozenDetector(tf.Module):
    """``detector(images [B, H, W, 3] 0..255, image_sizes=None)`` → the model's detections
    dict (``boxes [B, M, 4]`` in ``config.bounding_box_format``, absolute pixels of the
    inputs; ``confidence``, ``labels``, ``num_detections``), as ``model(...)`` returns it.
    A zero-padded batch (``image_sizes`` given) runs image by image, as in the model.

    ``config``: the model's ``RFCNConfig``.
    """

    def __init__(self, model):
        super().__init__(name="rfcn_frozen")
        self.config = model.config
        # The unpadded path only: frozen inside the model's padded-batch tf.cond, the
        # constants would reach the convolutions as branch inputs, not as constants.
        live = tf.function(lambda images: model._detect(images)).get_concrete_function(
            tf.TensorSpec([None, None, None, 3], tf.float32, name="images"))
        self._structure = live.structured_outputs
        self.frozen = convert_variables_to_constants_v2(live)

    def detect(self, images):
        """An unpadded float32 batch ``[B, H, W, 3]`` → detections (tensors)."""
        return tf.nest.pack_sequence_as(self._structure, self.frozen(images))

    def detect_padded(self, images, image_sizes):
        """float32 images zero padded beyond ``image_sizes [B, 2]`` → detections (tensors)."""
        return detect_each_if_padded(self.detect, images, image_sizes,
                                     self.config.max_detections)

    def __call__(self, images, image_sizes=None):
        inputs = as_model_inputs(images if image_sizes is None
                                 else {"images": images, "image_sizes": image_sizes})
        images = tf.convert_to_tensor(inputs["images"])
        check_image_spec(images.shape, images.dtype)
        images = tf.cast(images, tf.float32)
        if inputs["image_sizes"] is None:
            return self.detect(images)
        return self.detect_padded(images, inputs["image_sizes"])


def freeze(model):
    """``model`` (an ``RFCN``) → a ``FrozenDetector``: the same detections, the weights as
    constants of the graph (module doc)."""
    if not isinstance(model, RFCN):
        raise TypeError(f"freeze needs an RFCN model; got {type(model).__name__}")
    return FrozenDetector(model)
