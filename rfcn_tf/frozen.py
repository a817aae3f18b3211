"""A frozen detector: the model's inference graph with its weights as constants and every
BatchNorm folded into the convolution before it.

Two things make TensorFlow's CPU convolutions (oneDNN) run at their best on one image, and
``model.predict`` has neither: a filter that is a constant of the graph (oneDNN then keeps it
in its blocked layout; read from a variable, a batch of one runs on the plain layout, 1.6×
slower at conv4/conv5's shapes), and a convolution followed by nothing but a bias, a residual
add and a ReLU (grappler then fuses them into it; an inference BatchNorm in between is a
multiply and an add over the whole activation, which stop the fusion, even when its values
make it the identity). ``freeze_for_inference(model)`` traces the unpadded detection graph
once with every variable replaced by a constant and every conv → BatchNorm pair folded:

    kernel' = kernel · s,  s = γ / √(σ² + ε)         (per output channel)
    bias'   = (b − μ) · s + β                        (b = 0 for a conv without a bias)

the BatchNorm left out of the trace (for a conv without a bias of its own, replaced by
``+ bias'``). Under a mixed precision policy the BatchNorms are kept (Keras computes them in
float32 on purpose; folded, their scale would go into float16 kernels). The result equals
the model's to float rounding. It is a snapshot: weights changed later
(more training, ``load_weights``) do not reach it; freeze again. The SavedModel export
serves it.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from rfcn_tf.inputs import as_model_inputs, check_image_spec, detect_each_if_padded
from rfcn_tf.keras_internals import inbound_nodes, outbound_nodes, walk_layers
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
        folded = fold_batchnorms(model)

        # The unpadded path only: traced inside the model's padded-batch tf.cond, the
        # constants would reach the convolutions as branch inputs, not as constants.
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
        def detect(images):
            with folded_trace(folded):
                return model._detect(images)

        self.frozen = detect.get_concrete_function()

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


def conv_batchnorm_pairs(model):
    """``[(Conv2D, BatchNormalization)]`` of ``model`` and its nested models: each BatchNorm
    normalises (over channels) the output of one convolution that nothing else reads (in
    every graph the two layers were called in: sub-models of a model add calls)."""
    pairs = []
    for layer in walk_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.renorm:
            continue
        nodes = inbound_nodes(layer)
        parents = {id(p.operation): p.operation for node in nodes for p in node.parent_nodes}
        if len(parents) != 1 or any(len(node.parent_nodes) != 1 for node in nodes):
            continue
        conv = next(iter(parents.values()))
        rank = len(nodes[0].input_tensors[0].shape)
        if (
            isinstance(conv, keras.layers.Conv2D)
            and conv.data_format == "channels_last"
            and layer.axis in (-1, rank - 1)
            and all(node.operation is layer for node in outbound_nodes(conv))
        ):
            pairs.append((conv, layer))
    return pairs


def fold_batchnorms(model):
    """→ ``(values, offsets)`` (module doc). values: ``[(variable, value)]`` for every variable
    the trace reads — its own value, or the folded kernel and bias of a convolution of
    ``conv_batchnorm_pairs``; offsets: ``{BatchNorm: bias' or None}``, what each folded
    BatchNorm becomes in the trace (``+ bias'``, or nothing when its conv took the bias)."""
    values = {id(v): v.numpy() for v in model.variables}
    offsets = {}
    for conv, bn in conv_batchnorm_pairs(model):
        if conv.compute_dtype != "float32":
            continue  # a mixed policy: the BatchNorm computes in float32 by design; kept
        mean = bn.moving_mean.numpy().astype(np.float64)
        variance = bn.moving_variance.numpy().astype(np.float64)
        gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else 1.0
        beta = bn.beta.numpy().astype(np.float64) if bn.center else 0.0
        scale = gamma / np.sqrt(variance + bn.epsilon)
        bias = conv.bias.numpy().astype(np.float64) if conv.use_bias else 0.0
        folded = ((bias - mean) * scale + beta).astype(np.float32)
        values[id(conv.kernel)] = (conv.kernel.numpy() * scale).astype(np.float32)
        if conv.use_bias:  # a BiasAdd, which grappler fuses into the convolution
            values[id(conv.bias)] = folded
            offsets[bn] = None
        else:
            offsets[bn] = folded
    unread = {id(v) for bn in offsets for v in bn.variables}  # left out of the trace
    return [(v, values[id(v)]) for v in model.variables if id(v) not in unread], offsets


@contextlib.contextmanager
def folded_trace(folded):
    """Within (while tracing): every variable of ``folded = fold_batchnorms(model)`` reads as a
    constant of the graph, and each folded BatchNorm passes its input through or adds its
    offset; the instances' own ``call`` comes back on exit."""
    values, offsets = folded
    mapping = [(variable, tf.constant(value)) for variable, value in values]

    def passthrough(offset):
        if offset is None:
            return lambda inputs, training=None, mask=None: inputs
        return lambda inputs, training=None, mask=None: inputs + tf.constant(offset, inputs.dtype)

    try:
        for bn, offset in offsets.items():
            bn.call = passthrough(offset)
        with keras.StatelessScope(state_mapping=mapping):
            yield
    finally:
        for bn in offsets:
            bn.__dict__.pop("call", None)
