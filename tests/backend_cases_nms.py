"""The NMS cases of ``tests/test_nms.py``, run under each Keras backend (in the test process
for TensorFlow, through ``tests.backend_helpers.on_backend`` for JAX and PyTorch).

Arrays come in named ``<case>_<field>`` and go back the same way. Under JAX every function
runs jitted (the thresholds traced, so one compilation per shape), which checks that the code
has static shapes and no Python control flow on tensor values; under TensorFlow in a
``tf.function`` that soon sees unknown shapes.
"""

import keras
import numpy as np
from keras import ops

PROPOSALS = dict(pre_nms_train=300, post_nms_train=250, pre_nms_test=300, post_nms_test=250, nms_iou=0.7)


def _jit(fn, static=()):
    """``fn`` compiled as the backend runs a model: jitted (JAX), a ``tf.function`` with
    shapes left unknown after the first retrace (TensorFlow's dynamic shapes), eager (torch)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn, static_argnums=static)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


def _cases(arrays, prefix):
    names = sorted({k.split("_")[0] for k in arrays if k.startswith(prefix)})
    return [
        (name, {k.split("_", 1)[1]: v for k, v in arrays.items() if k.split("_")[0] == name})
        for name in names
    ]


def run_all(**arrays):
    """``nms<i>_{boxes,scores,settings}``, ``aware<i>_{boxes,scores,settings}`` (settings:
    max_output, iou_threshold, score_threshold), ``proposals_{logits,deltas,anchors,sizes}``,
    ``decoder<i>_{rois,valid,logits,deltas,sizes,scales}`` → the neutral NMS's and the two
    layers' outputs (the layers under TensorFlow run its kernels: the reference)."""
    from rfcn_tf.layers.detection import DetectionDecoder
    from rfcn_tf.layers.proposals import ProposalLayer
    from rfcn_tf.ops import nms

    plain = _jit(nms.non_max_suppression, static=(2,))
    aware = _jit(nms.class_aware_non_max_suppression, static=(2,))
    out = {}
    for name, case in _cases(arrays, "nms"):
        max_output, iou, score = case["settings"]
        iou, score = np.float32(iou), np.float32(score)
        out[f"{name}_index"], out[f"{name}_count"] = plain(
            case["boxes"], case["scores"], int(max_output), iou, score
        )
    for name, case in _cases(arrays, "aware"):
        max_output, iou, score = case["settings"]
        iou, score = np.float32(iou), np.float32(score)
        kept = aware(case["boxes"], case["scores"], int(max_output), iou, score)
        for field, value in zip(("boxes", "scores", "classes", "count"), kept):
            out[f"{name}_{field}"] = value

    layer = ProposalLayer(**PROPOSALS)
    propose = _jit(lambda *a: layer(*a))
    case = dict(_cases(arrays, "proposals"))["proposals"]
    args = (case["logits"], case["deltas"], case["anchors"], case["sizes"])
    out["proposals_boxes"], out["proposals_scores"], out["proposals_valid"] = propose(*args)
    if keras.backend.backend() == "jax":  # training differentiates through the layer's inputs
        import jax

        def loss(logits):
            _, scores, valid = layer(logits, *args[1:], training=True)
            return ops.sum(ops.where(valid, scores, 0.0)) + ops.sum(logits)

        out["proposals_gradient"] = jax.grad(loss)(case["logits"])

    decoder = DetectionDecoder()
    decode = _jit(lambda *a: decoder(*a))
    for name, case in _cases(arrays, "decoder"):
        fields = ("rois", "valid", "logits", "deltas", "sizes", "scales")
        for key, value in decode(*(case[f] for f in fields)).items():
            out[f"{name}_{key}"] = value
    out.update(symbolic_shapes())
    return {k: ops.convert_to_numpy(v) for k, v in out.items()}


def symbolic_shapes():
    """Both layers called on ``keras.Input``s of unknown sizes, as a functional model
    builds them: their outputs' shapes (-1 for unknown) and dtypes."""
    from rfcn_tf.layers.detection import DetectionDecoder
    from rfcn_tf.layers.proposals import ProposalLayer

    sizes = keras.Input((2,), dtype="int32")
    rpn = (keras.Input((None, None, 9)), keras.Input((None, None, 36)), keras.Input((4,)), sizes)
    second = (
        keras.Input((None, 4)),
        keras.Input((None,), dtype="bool"),
        keras.Input((None, 4)),
        keras.Input((None, 4)),
    )
    outputs = (
        *ProposalLayer(**PROPOSALS)(*rpn),
        *DetectionDecoder(max_detections=7)(*second, sizes).values(),
    )
    return {
        "symbolic_shapes": np.array(
            [[-1 if d is None else d for d in t.shape] + [-2] * (3 - len(t.shape)) for t in outputs]
        ),
        "symbolic_dtypes": np.array([str(t.dtype) for t in outputs]),
    }
