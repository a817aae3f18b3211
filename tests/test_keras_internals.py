"""The private Keras / LiteRT attributes of ``rfcn_tf.keras_internals`` still do what rfcn_tf
needs: a Keras release that renames or changes one fails here, by name, rather than somewhere
deep in freezing, resuming or exporting."""

import inspect

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from rfcn_tf import keras_internals as internals


def _conv_bn_model():
    inputs = keras.Input((8, 8, 3), name="inner_input")
    conv = keras.layers.Conv2D(4, 3, name="conv")
    bn = keras.layers.BatchNormalization(name="bn")
    inner = keras.Model(inputs, bn(conv(inputs)), name="inner")
    outer_in = keras.Input((8, 8, 3), name="outer_input")
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(inner(outer_in))
    return keras.Model(outer_in, keras.layers.Dense(1, name="dense")(outputs)), conv, bn


def test_walk_layers_reaches_nested_models_once():
    model, conv, bn = _conv_bn_model()
    names = [layer.name for layer in internals.walk_layers(model)]
    assert sorted(names) == sorted(["outer_input", "inner", "inner_input", "conv", "bn", "pool", "dense"])


def test_inbound_and_outbound_nodes_link_conv_and_batchnorm():
    _, conv, bn = _conv_bn_model()
    (node,) = internals.inbound_nodes(bn)
    assert [parent.operation for parent in node.parent_nodes] == [conv]
    assert len(node.input_tensors[0].shape) == 4
    assert [n.operation for n in internals.outbound_nodes(conv)] == [bn]


def test_loss_tracker_is_fits_loss():
    model, _, _ = _conv_bn_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 8, 8, 3), np.float32), np.zeros((4, 1), np.float32)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert internals.loss_tracker(model) in model.metrics
    np.testing.assert_allclose(float(internals.loss_tracker(model).result()), history.history["loss"][0])


def test_resume_at_epoch_skips_the_epochs_before():
    model, _, _ = _conv_bn_model()
    model.compile(optimizer="sgd", loss="mse")

    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            internals.resume_at_epoch(self.model, 2)

    x, y = np.ones((4, 8, 8, 3), np.float32), np.zeros((4, 1), np.float32)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[Resume()])
    assert history.epoch == [2]


def test_distribute_strategy_is_the_one_built_under():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model, _, _ = _conv_bn_model()
        model.compile(optimizer="sgd", loss="mse")
    assert internals.distribute_strategy(model) is strategy
    plain, _, _ = _conv_bn_model()
    assert internals.distribute_strategy(plain) is None


def test_tflite_op_details_name_the_ops():
    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32)])
    def add_mul(x):
        return x * 2.0 + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([add_mul.get_concrete_function()], add_mul)
    interpreter = Interpreter(model_content=converter.convert())
    names = {op["op_name"] for op in internals.tflite_op_details(interpreter)}
    assert names == {"MUL", "ADD"}


def test_jax_trainer_passes_the_optimizer_state_to_compute_loss_and_updates():
    """``RFCN.compute_loss_and_updates`` reads the step from ``optimizer_variables`` (module doc)."""
    from keras.src.backend.jax.trainer import JAXTrainer

    parameters = inspect.signature(JAXTrainer.compute_loss_and_updates).parameters
    assert "optimizer_variables" in parameters
    assert "optimizer_variables=optimizer_variables" in inspect.getsource(JAXTrainer.train_step)


def test_replaced_calls_reach_the_functional_graph_and_come_back():
    """``replaced_calls`` (how ``rfcn_tf.export.folding`` leaves folded BatchNorms out of a
    trace): an instance ``call`` is what ``Layer.__call__`` runs, also when a nested
    functional model calls the layer inside a ``tf.function``; the class's comes back."""
    model, conv, bn = _conv_bn_model()
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    bn.set_weights([w + 0.5 for w in bn.get_weights()])  # not the identity
    inner = model.get_layer("inner")
    before = inner(x, training=False).numpy()

    @tf.function
    def traced(images):
        return inner(images, training=False)

    with internals.replaced_calls({bn: lambda inputs, training=None, mask=None: inputs + 1.0}):
        replaced = traced(x).numpy()
    np.testing.assert_allclose(replaced, conv(x).numpy() + 1.0, rtol=1e-6)
    assert "call" not in bn.__dict__
    np.testing.assert_allclose(inner(x, training=False).numpy(), before, rtol=1e-6)
    assert not np.allclose(before, replaced, atol=0.1)
