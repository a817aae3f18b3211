"""rfcn_tf's BatchNormalization: TensorFlow's fused kernel in training gives Keras's results
(outputs, moving statistics, gradients), checked against numpy from the definition and
against ``keras.layers.BatchNormalization``; every other call is Keras's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rfcn_tf
from rfcn_tf.keras_internals import walk_layers
from rfcn_tf.layers import BatchNormalization

# (shape, momentum, epsilon). (1, 1, 1, C): one value per channel, variance 0, so the output
# is float32's rounding of x − mean times γ/√ε; with ε = 1e-5 that is ×316 and the comparison
# would measure rounding noise, so that shape runs with ε = 1e-3 only.
CASES = [
    ((2, 5, 7, 3), 0.9, 1e-3),
    ((2, 5, 7, 3), 0.0, 1.001e-5),
    ((1, 1, 1, 4), 0.9, 1e-3),
    ((1, 1, 1, 4), 0.0, 1e-3),
    ((3, 2, 9, 6), 0.9, 1e-3),
    ((3, 2, 9, 6), 0.0, 1.001e-5),
]


def pair(channels, **kwargs):
    """rfcn_tf's layer and Keras's, built alike with the same random weights."""
    ours, keras_bn = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    rng = np.random.default_rng(channels)
    weights = [
        rng.uniform(0.5, 1.5, channels),
        rng.normal(0, 0.5, channels),
        rng.normal(0, 0.5, channels),
        rng.uniform(0.5, 2.0, channels),
    ]
    for layer in (ours, keras_bn):
        layer.build((None, None, None, channels))
        layer.set_weights([w.astype(np.float32) for w in weights])
    return ours, keras_bn, weights


def training_call(layer, x, upstream):
    """Output, moving statistics and the gradients to x, γ and β of Σ(output · upstream)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        total = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(total, [x, layer.gamma, layer.beta])
    stats = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    return y.numpy(), stats, [g.numpy() for g in grads]


@pytest.mark.parametrize("shape, momentum, epsilon", CASES)
def test_training_equals_numpy_and_keras(shape, momentum, epsilon):
    rng = np.random.default_rng(len(shape) + shape[0])
    x = rng.normal(2.0, 3.0, shape).astype(np.float32)
    upstream = rng.normal(size=shape).astype(np.float32)
    ours, keras_bn, (gamma, beta, moving_mean, moving_var) = pair(
        shape[-1], momentum=momentum, epsilon=epsilon
    )

    y, stats, grads = training_call(ours, x, upstream)
    y_keras, stats_keras, grads_keras = training_call(keras_bn, x, upstream)

    # numpy, from the definition (float64): biased batch variance normalises and is kept
    flat = x.reshape(-1, shape[-1]).astype(np.float64)
    mean, var = flat.mean(0), flat.var(0)
    expected = (x - mean) / np.sqrt(var + epsilon) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats[0], moving_mean * momentum + mean * (1 - momentum), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[1], moving_var * momentum + var * (1 - momentum), rtol=1e-5, atol=1e-6)
    # the gradient of Σ(y·u) to x: γ/σ · (u − mean(u) − x̂ · mean(u·x̂)), per channel
    sigma = np.sqrt(var + epsilon)
    x_hat = (flat - mean) / sigma
    u = upstream.reshape(-1, shape[-1]).astype(np.float64)
    dx = gamma / sigma * (u - u.mean(0) - x_hat * (u * x_hat).mean(0))
    np.testing.assert_allclose(grads[0].reshape(-1, shape[-1]), dx, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads[1], (u * x_hat).sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[2], u.sum(0), rtol=1e-5, atol=1e-5)

    np.testing.assert_allclose(y, y_keras, rtol=1e-5, atol=1e-5)
    for a, b in zip(stats + grads, stats_keras + grads_keras):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def test_a_training_call_runs_the_fused_kernel_each_way():
    ours, keras_bn, _ = pair(4)
    x = tf.random.normal([2, 3, 5, 4])

    def op_types(layer):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                total = tf.reduce_sum(y * y)
            return tape.gradient(total, x)

        return {op.type for op in step.get_concrete_function(x).graph.get_operations()}

    ours_ops, keras_ops = op_types(ours), op_types(keras_bn)
    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= ours_ops
    assert "Mean" not in ours_ops
    assert "FusedBatchNormV3" not in keras_ops and "Mean" in keras_ops


def test_other_calls_are_keras_own():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    ours, keras_bn, _ = pair(5)
    np.testing.assert_allclose(ours(x, training=False), keras_bn(x, training=False), rtol=1e-6, atol=1e-6)
    ours.trainable = keras_bn.trainable = False  # frozen: inference mode, statistics untouched
    np.testing.assert_allclose(ours(x, training=True), keras_bn(x, training=True), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.moving_mean.numpy(), keras_bn.moving_mean.numpy())
    # not NHWC-shaped (a per-RoI feature vector): Keras's formulation, same result
    flat_ours, flat_keras = BatchNormalization(), keras.layers.BatchNormalization()
    vectors = x.reshape(6, 20)
    np.testing.assert_allclose(
        flat_ours(vectors, training=True), flat_keras(vectors, training=True), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        flat_ours.moving_variance.numpy(), flat_keras.moving_variance.numpy(), rtol=1e-6
    )


def test_bfloat16_inputs_compute_in_float32_and_return_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        ours, keras_bn, _ = pair(3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = tf.cast(tf.random.stateless_normal([2, 4, 4, 3], seed=[1, 2]), tf.bfloat16)
    y, y_keras = ours(x, training=True), keras_bn(x, training=True)
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32), tf.cast(y_keras, tf.float32), atol=1e-2)
    np.testing.assert_allclose(ours.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=1e-5)


@pytest.mark.parametrize("backbone", ["small", "resnet50"])
def test_every_backbone_batchnorm_is_ours(backbone):
    config = rfcn_tf.RFCNConfig.small(num_classes=2) if backbone == "small" else None
    model = rfcn_tf.RFCN(config=config) if config else rfcn_tf.RFCN(num_classes=2, backbone=backbone)
    norms = [layer for layer in walk_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is BatchNormalization for layer in norms)
