"""The one way an export's graph gets its weights: traced with every variable a constant and
every BatchNorm folded into the convolution before it (``constant_function``). The SavedModel's
frozen detector and the TFLite/ONNX graph are both traced so.

Two things make TensorFlow's CPU convolutions (oneDNN) run at their best on one image, and
``model.predict`` has neither: a filter that is a constant of the graph (oneDNN then keeps it
in its blocked layout; read from a variable, a batch of one runs on the plain layout, 1.6×
slower at conv4/conv5's shapes), and a convolution followed by nothing but a bias, a residual
add and a ReLU (grappler then fuses them into it; an inference BatchNorm in between is a
multiply and an add over the whole activation, which stop the fusion, even when its values
make it the identity). Each conv → BatchNorm pair is folded:

    kernel' = kernel · s,  s = γ / √(σ² + ε)         (per output channel)
    bias'   = (b − μ) · s + β                        (b = 0 for a conv without a bias)

the BatchNorm left out of the trace (for a conv without a bias of its own, replaced by
``+ bias'``). A convolution computing in another dtype than float32 (a mixed precision
policy) keeps its BatchNorm: Keras computes BatchNorm in float32 on purpose; folded, its scale
would go into float16 kernels. The TFLite/ONNX graph is a float32 twin, so folded throughout.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from rfcn_tf.keras_internals import inbound_nodes, outbound_nodes, replaced_calls, walk_layers


def constant_function(model, input_spec):
    """``model``'s detections of an unpadded batch (``model(images, training=False)``) as a
    ``tf.function`` of ``input_spec`` (a float32 ``tf.TensorSpec [B, H, W, 3]``), traced
    now with the weights as constants of the graph and the BatchNorms folded (module doc):
    a snapshot that later weight changes do not reach. Returns the detections dict."""
    folded = fold_batchnorms(model)

    # Unpadded (image_sizes None): traced inside the model's padded-batch tf.cond, the
    # constants would reach the convolutions as branch inputs, not as constants.
    @tf.function(input_signature=[input_spec])
    def detect(images):
        with folded_trace(folded):
            return model({"images": images, "image_sizes": None}, training=False)

    # Anything the trace captured (a variable that is not the model's, an eager tensor)
    # would be an input of the graph, not a constant: oneDNN's layout and the converters
    # need constants.
    captured = detect.get_concrete_function().captured_inputs
    if captured:
        raise RuntimeError(
            f"the frozen graph captured {len(captured)} tensor(s) instead of constants: "
            f"{[getattr(c, 'name', c.dtype) for c in captured][:5]}"
        )
    return detect


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
    offset."""
    values, offsets = folded
    mapping = [(variable, tf.constant(value)) for variable, value in values]

    def passthrough(offset):
        if offset is None:
            return lambda inputs, training=None, mask=None: inputs
        return lambda inputs, training=None, mask=None: inputs + tf.constant(offset, inputs.dtype)

    with replaced_calls({bn: passthrough(offset) for bn, offset in offsets.items()}):
        with keras.StatelessScope(state_mapping=mapping):
            yield
