"""Helpers shared by the benchmark scripts: random RoIs, timing, the environment line."""

import os
import statistics
import time

import numpy as np
import tensorflow as tf


def random_rois(rng, count, height, width):
    """``[1, count, 4]`` yxyx boxes: 16–600 px sides, any aspect, clipped to the image."""
    sides = np.exp(rng.uniform(np.log(16), np.log(600), size=(count, 2)))
    centres = rng.uniform(0, 1, size=(count, 2)) * [height, width]
    lo = np.clip(centres - sides / 2, 0, [height, width])
    hi = np.clip(centres + sides / 2, 0, [height, width])
    return np.concatenate([lo, hi], -1)[None].astype(np.float32)


def trained_like(model, seed=0):
    """Give every BatchNorm of ``model`` (nested models included) statistics and an affine
    part like a trained network's, and every conv bias small random values. Random-init
    ones (γ 1, β 0, μ 0, σ² 1, biases 0) let grappler drop most of an inference BatchNorm
    and every zero bias, which a trained model never allows: timings would flatter the
    unfrozen graph."""
    import keras

    rng = np.random.default_rng(seed)
    from rfcn_tf.keras_internals import walk_layers

    for layer in [model, *walk_layers(model)]:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.1, n),
                    rng.normal(0, 0.1, n),
                    rng.uniform(0.5, 2.0, n),
                ]
            )
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.01, layer.bias.shape))
    return model


def pooled_gradient(layer, weights):
    """A ``tf.function`` ``(maps, rois) → d Σ(layer(maps, rois) · weights) / d maps``: a
    PSRoIPool-like layer's forward and backward pass."""

    @tf.function
    def forward_backward(maps, rois):
        with tf.GradientTape() as tape:
            tape.watch(maps)
            loss = tf.reduce_sum(layer(maps, rois) * weights)
        return tape.gradient(loss, maps)

    return forward_backward


def block(outputs):
    """Wait for every tensor of a (nested) result (numpy values and the like are ready)."""
    for t in tf.nest.flatten(outputs):
        if isinstance(t, tf.Tensor):
            t.numpy()


def interleaved_times(calls, repeats, warmup):
    """``{name: (fn, args)}`` → ``{name: [ms per run]}``. Each round runs every call once,
    in turn, so that a change in the machine's load hits all of them alike."""
    for _ in range(warmup):
        for fn, args in calls.values():
            block(fn(*args))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            start = time.perf_counter()
            block(fn(*args))
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(fn, args, repeats, warmup=2):
    """Median wall time of ``fn(*args)`` in ms after ``warmup`` runs."""
    return statistics.median(interleaved_times({"fn": (fn, args)}, repeats, warmup)["fn"])


def environment():
    """``TF <version>  devices: …  CPUs: n  load avg: …`` for a benchmark's header."""
    devices = ", ".join(d.name for d in tf.config.list_logical_devices())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"TF {tf.__version__}  devices: {devices}  CPUs: {os.cpu_count()}  load avg: {load}"
