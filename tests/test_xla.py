"""XLA: ``compile(jit_compile=True)`` compiles the convolutions (forward and backward) and
leaves the rest of the step to TensorFlow; the step and the detections stay those of the
plain model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig
from tests.model_helpers import assert_same_detections_any_order

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


def test_the_convolutions_are_what_xla_compiles(steps):
    model = steps[True][0]
    x = tf.zeros([1, SIDE, SIDE, 3])
    hlo = model._jit_convolutions.experimental_get_compiler_ir(x, True)(stage="hlo")
    assert "convolution" in hlo
    assert "CropAndResize" not in hlo and "NonMaxSuppression" not in hlo


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
    monkeypatch.setattr(RFCN, "_resolve_auto_jit_compile", lambda self: True)
    model.compile(optimizer="sgd")
    assert model.jit_compile_convolutions and model.jit_compile is False
    images, targets = batch()
    assert np.isfinite(model.train_on_batch(images, targets, return_dict=True)["loss"])
