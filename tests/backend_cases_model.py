"""What ``test_backends.py`` runs under each Keras backend (in a subprocess of its own): the
model loaded from one ``.keras`` file, its detections and its four losses on given inputs,
and a few training steps."""

import keras
import numpy as np

from rfcn_tf.model import LOSS_NAMES

# predict's contract, in the order the test compares them
DETECTION_KEYS = ("boxes", "confidence", "labels", "num_detections")


def detect_and_losses(model_paths, images, boxes, labels, step):
    """Each model of ``model_paths`` → ``"{i}/…"``: the detections of ``images`` and the
    losses of the training-mode forward pass against ``boxes``/``labels`` with the samplers
    seeded at training step ``step``."""
    out = {}
    for i, path in enumerate(model_paths):
        out.update({f"{i}/{k}": v for k, v in _detect_and_losses(path, images, boxes, labels, step).items()})
    return out


def _detect_and_losses(model_path, images, boxes, labels, step):
    model = keras.saving.load_model(str(model_path))
    out = {f"det_{k}": v for k, v in model.predict(images, verbose=0).items()}
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(int(step))
    x = {"images": images, "image_sizes": None}
    y = {"boxes": boxes, "labels": labels}
    raw = model.features_model(x, training=True)
    total = model.compute_loss(x, y, raw, training=True)
    out["loss_total"] = keras.ops.convert_to_numpy(total)
    for name in LOSS_NAMES:
        out[f"loss_{name}"] = keras.ops.convert_to_numpy(model.loss_trackers[name].result())
    return out


def fit_and_save(model_path, out_path, images, boxes, labels, steps):
    """``steps`` SGD steps on one batch (the backend's own ``fit``), saved to ``out_path``
    → the loss history and the trained model's detections of ``images``."""
    model = keras.saving.load_model(str(model_path))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    data = ({"images": images}, {"boxes": boxes, "labels": labels})
    history = model.fit(*data, batch_size=len(images), epochs=int(steps), verbose=0, shuffle=False)
    model.save(str(out_path))
    out = {f"det_{k}": v for k, v in model.predict(images, verbose=0).items()}
    out["loss"] = np.asarray(history.history["loss"], np.float32)
    return out


def data_parallel_step(model_path, images, boxes, labels):
    """One SGD step on the global batch under ``keras.distribution.DataParallel`` over every
    JAX device (the test starts 2 virtual CPU devices), and the same step on one device from
    the same weights → both models' weights, flattened in order."""
    import jax

    devices = jax.devices()
    data = ({"images": images}, {"boxes": boxes, "labels": labels})
    out = {"devices": np.asarray(len(devices))}
    for tag, distribution in (
        ("single", None),
        ("parallel", keras.distribution.DataParallel(devices=devices)),
    ):
        keras.distribution.set_distribution(distribution)
        model = keras.saving.load_model(str(model_path))
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        model.fit(*data, batch_size=len(images), epochs=1, verbose=0, shuffle=False)
        for i, weight in enumerate(model.weights):
            out[f"{tag}/{i}"] = keras.ops.convert_to_numpy(weight)
    keras.distribution.set_distribution(None)
    return out


def refused_targets(model_path, images, boxes, labels):
    """``fit`` / ``train_on_batch`` of bad target arrays under this backend → the first line
    of each error (a jitted JAX step cannot raise: the check runs before it)."""
    model = keras.saving.load_model(str(model_path))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    nan_boxes = boxes.copy()
    nan_boxes[0, 0, 1] = np.nan
    cases = {
        "label": lambda: model.train_on_batch(images, {"boxes": boxes, "labels": labels + 100}),
        "nan": lambda: model.fit(images, {"boxes": nan_boxes, "labels": labels}, verbose=0),
    }
    out = {}
    for name, run in cases.items():
        try:
            run()
            out[name] = "no error"
        except ValueError as error:
            out[name] = str(error).splitlines()[0]
    return out


def adapted_statistics(model_path, images, batch_size):
    """The model of ``model_path`` adapted to ``images`` (``rfcn_tf.adapt_batchnorm``) →
    ``"mean{i}"`` / ``"var{i}"``: each BatchNorm's new moving statistics, in layer order."""
    from rfcn_tf.adaptation import adapt_batchnorm, batchnorm_layers

    model = keras.saving.load_model(str(model_path))
    adapt_batchnorm(model, list(images), batch_size=int(batch_size))
    out = {}
    for i, bn in enumerate(batchnorm_layers(model)):
        out[f"mean{i}"] = keras.ops.convert_to_numpy(bn.moving_mean)
        out[f"var{i}"] = keras.ops.convert_to_numpy(bn.moving_variance)
    return out
