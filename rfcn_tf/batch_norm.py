"""The backbones' BatchNormalization: Keras's, with TensorFlow's fused kernel in training.

Keras 3 computes a training-mode BatchNorm as ``ops.moments`` and ``ops.batch_normalization``:
about eight element-wise ops and reductions over the activation forward, as many again
backward. TensorFlow has one kernel for each direction (``FusedBatchNormV3`` and its gradient,
oneDNN's on an x86 CPU). On TensorFlow a training call on channels-last 4-D inputs takes it:
the same arithmetic (the batch's mean and biased variance normalise; the moving statistics
follow Keras's momentum rule), 0.81–0.84× the ResNet-50 training step with BatchNorms
training, 0.87× the small model's (docs/figures.md). Every other call, and every call on JAX
and PyTorch, is Keras's own.
"""

import keras

from rfcn_tf.ops import on_tensorflow


@keras.saving.register_keras_serializable(package="rfcn_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (same arguments, weights and results); on
    TensorFlow a training call on ``[B, H, W, C]`` runs as one fused kernel each way."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and on_tensorflow() and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # as Keras: BatchNorm computes in float32
        fused = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=tf.cast(self.gamma, "float32"),
            offset=tf.cast(self.beta, "float32"),
            mean=tf.constant([], "float32"),
            variance=tf.constant([], "float32"),
            epsilon=self.epsilon,
            is_training=True,
            data_format="NHWC",
        )
        # The kernel returns the unbiased variance (n / (n − 1)); Keras keeps the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
        variance = fused.batch_variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + fused.batch_mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(fused.y, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (
            mask is None
            and len(inputs.shape) == 4
            and list(self._reduction_axes) == [0, 1, 2]
            and self.scale
            and self.center
            and not self.renorm
            and not self.synchronized
        )
