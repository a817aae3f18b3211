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
    (TensorFlow's ``tf.gather(params, indices, batch_dims=1)``).

    One ``take`` over the flattened rows, each image's indices offset by its row: under
    TensorFlow as fast as ``batch_dims=1`` (``take_along_axis`` there is 2–4× slower with
    unknown shapes)."""
    shape = keras.ops.shape(params)
    offsets = keras.ops.arange(shape[0], dtype="int32")[:, None] * shape[1]
    rows = keras.ops.reshape(params, (-1,) + tuple(shape[2:]))
    return keras.ops.take(rows, keras.ops.cast(indices, "int32") + offsets, axis=0)
