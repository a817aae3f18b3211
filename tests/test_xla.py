"""XLA: ``compile(jit_compile=True)`` compiles the convolutions (forward and backward) and
leaves the rest of the step to TensorFlow; the step and the detections stay those of the
plain model."""

import collections
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig
from tests.model_helpers import assert_same_detections_any_order

pytestmark = pytest.mark.slow  # XLA compilations of training steps

SIDE = 96


def batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, SIDE, SIDE + 32, 3)).astype(np.float32)
    boxes = np.tile(np.array([[[10, 10, 50, 60], [30, 40, 80, 100]]], np.float32), (2, 1, 1))
    labels = np.tile(np.array([[1, 2]], np.int32), (2, 1))
    return images, {"boxes": boxes, "labels": labels}


def one_step(jit_compile):
    keras.utils.set_random_seed(0)
    model = RFCN(config=RFCNConfig.small(num_classes=3, min_side=SIDE, max_side=SIDE + 32))
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit_compile)
    before = [v.numpy() for v in model.trainable_variables]
    images, targets = batch()
    logs = model.train_on_batch(images, targets, return_dict=True)
    update = np.concatenate([(v.numpy() - b).ravel() for v, b in zip(model.trainable_variables, before)])
    return model, logs, update


@pytest.fixture(scope="module")
def steps():
    return {jit: one_step(jit) for jit in (False, True)}


def test_a_jit_step_equals_the_plain_step(steps):
    plain_model, plain_logs, plain = steps[False]
    model, logs, update = steps[True]
    assert model.jit_compile_convolutions and not plain_model.jit_compile_convolutions
    assert model.jit_compile is False  # Keras's whole-step function is not XLA-compiled
    for name in ("rpn_cls_loss", "rpn_box_loss", "cls_loss", "box_loss"):
        assert logs[name] == pytest.approx(plain_logs[name], rel=1e-4, abs=1e-6), name
    # XLA fuses and reorders the float32 arithmetic: measured 6e-4 of the update's norm.
    assert np.linalg.norm(update - plain) < 1e-2 * np.linalg.norm(plain)


def conv2d_layers(layer):
    """The ``Conv2D`` layers of ``layer`` and of the models nested in it."""
    if isinstance(layer, keras.layers.Conv2D):
        return [layer]
    return [conv for sub in getattr(layer, "layers", ()) for conv in conv2d_layers(sub)]


def hlo_convolutions(hlo):
    """The ``convolution`` instructions of an HLO module, counted by the TensorFlow op each
    was lowered from (``metadata={op_type=...}``)."""
    return collections.Counter(re.findall(r" convolution\(.*op_type=\"(\w+)\"", hlo))


def test_the_convolutions_are_what_xla_compiles(steps):
    model = steps[True][0]
    convs = len(conv2d_layers(model.convolutions))  # backbone, RPN and score maps
    assert all(layer.trainable for layer in conv2d_layers(model.convolutions))
    x = tf.zeros([1, SIDE, SIDE, 3])
    forward = model.convolutions._xla.experimental_get_compiler_ir(x, True)(stage="hlo")
    assert hlo_convolutions(forward) == {"Conv2D": convs}
    assert "CropAndResize" not in forward and "NonMaxSuppression" not in forward

    # The gradient of the compiled call, compiled: every filter gradient, and every input
    # gradient except the image's (nothing before the convolutions is trained).
    @tf.function(jit_compile=True)
    def gradient(x):
        with tf.GradientTape() as tape:
            total = tf.add_n([tf.reduce_sum(y) for y in model.convolutions._xla(x, True).values()])
        return tape.gradient(total, model.convolutions.trainable_variables)

    backward = gradient.experimental_get_compiler_ir(x)(stage="hlo")
    expected = {"Conv2D": convs, "Conv2DBackpropFilter": convs, "Conv2DBackpropInput": convs - 1}
    assert hlo_convolutions(backward) == expected

    # In Keras's training step the convolutions and their gradients sit in functions that
    # XLA must compile (the backward one is TensorFlow's gradient of the compiled call);
    # no convolution runs outside them.
    images, targets = batch()
    step = tf.function(model.train_step).get_concrete_function((tf.constant(images), targets))
    library = step.graph.as_graph_def().library.function
    by_function = {
        f.signature.name: (
            f.attr["_XlaMustCompile"].b,
            collections.Counter(n.op for n in f.node_def if n.op.startswith("Conv")),
        )
        for f in library
    }
    with_convs = [(xla, ops) for xla, ops in by_function.values() if ops]
    assert all(xla for xla, _ in with_convs), by_function
    assert {"Conv2DBackpropFilter": convs, "Conv2DBackpropInput": convs} in [ops for _, ops in with_convs]
    assert {"Conv2D": convs} in [ops for _, ops in with_convs]
    assert not [n.op for n in step.graph.as_graph_def().node if n.op.startswith("Conv")]


def test_jit_detections_equal_the_plain_ones(steps):
    images, _ = batch()
    plain = steps[False][0].predict_on_batch(images)
    jit = steps[True][0].predict_on_batch(images)
    assert int(plain["num_detections"].sum()) > 0
    assert_same_detections_any_order(jit, plain)
    # A padded batch runs image by image, through the same compiled convolutions.
    padded = np.zeros((2, SIDE + 16, SIDE + 48, 3), np.float32)
    padded[:, :SIDE, : SIDE + 32] = images
    sizes = np.array([[SIDE, SIDE + 32]] * 2, np.int32)
    out = steps[True][0].predict_on_batch({"images": padded, "image_sizes": sizes})
    assert_same_detections_any_order(out, plain)


def test_jit_compile_survives_a_keras_round_trip(steps, tmp_path):
    path = str(tmp_path / "jit.keras")
    steps[True][0].save(path)
    assert keras.models.load_model(path).jit_compile_convolutions
    assert not keras.models.load_model(path, compile=False).jit_compile_convolutions


def test_auto_is_keras_rule_and_never_the_whole_step(monkeypatch):
    model = RFCN(config=RFCNConfig.small(num_classes=3, min_side=SIDE, max_side=SIDE + 32))
    model.compile(optimizer="sgd")  # a CPU-only machine: Keras's "auto" means off
    assert not model.jit_compile_convolutions
    # Where Keras's "auto" would turn XLA on (a GPU), the convolutions compile and the step
    # runs; Keras's own whole-step XLA fails on CropAndResize.
    monkeypatch.setattr(RFCN, "_auto_xla_convolutions", lambda self: True)
    model.compile(optimizer="sgd")
    assert model.jit_compile_convolutions and model.jit_compile is False
    images, targets = batch()
    assert np.isfinite(model.train_on_batch(images, targets, return_dict=True)["loss"])
    # Keras's own "auto" for the whole step, on a machine with a GPU: off, since the model
    # declares supports_jit = False on TensorFlow (predict would otherwise compile it all).
    fresh = RFCN(config=RFCNConfig.small(num_classes=3, min_side=SIDE, max_side=SIDE + 32))
    gpu = types.SimpleNamespace(device_type="GPU", name="/physical_device:GPU:0")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda *args: [gpu])
    assert fresh.supports_jit is False and fresh.jit_compile is False
