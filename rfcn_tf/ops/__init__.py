"""Backend-neutral building blocks in ``keras.ops``, shared by the layers, the targets and
the losses, so the model runs under every Keras 3 backend (TensorFlow, JAX, PyTorch).

Where TensorFlow has a faster kernel for the same arithmetic (``crop_and_resize``, its NMS
kernels), the caller asks ``on_tensorflow()`` and takes it; the neutral formulation is
tested equal to the kernel.
"""

import keras


def on_tensorflow():
    """Whether Keras runs on the TensorFlow backend (the one with the fast kernels and
    exports)."""
    return keras.backend.backend() == "tensorflow"


def batched_gather(params, indices):
    """Per-row gather: ``params [B, N, ...]``, int ``indices [B, K]`` → ``[B, K, ...]``
    (TensorFlow's ``tf.gather(params, indices, batch_dims=1)``)."""
    indices = keras.ops.cast(indices, "int32")
    trailing = tuple(keras.ops.shape(params)[2:])
    index = keras.ops.reshape(indices, tuple(keras.ops.shape(indices)) + (1,) * len(trailing))
    if trailing:  # take_along_axis wants the index spelled out over the trailing axes
        index = keras.ops.broadcast_to(index, tuple(keras.ops.shape(indices)) + trailing)
    return keras.ops.take_along_axis(params, index, axis=1)
