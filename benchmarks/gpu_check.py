"""A GPU check a user can run (under 10 minutes on one GPU): tests on the GPU, GPU-vs-CPU
parity, ResNet-101 training at 600×1000 under mixed_float16 + XLA + MirroredStrategy, and
inference ms/image next to the published anchors.

    python benchmarks/gpu_check.py                       # on the visible GPUs
    python benchmarks/gpu_check.py --device cpu --config small --steps 3 --skip-tests   # wiring only

Steps: (1) the visible devices; (2) the layer/model/training tests (``pytest``) with the GPU
visible; (3) PSRoIPool forward + gradient and one training step from the same weights on the
device and on the CPU; (4) ``--steps`` training steps (``--policy``, default mixed_float16;
MirroredStrategy over every GPU; ``--xla on``, the default, compiles the convolutions with
XLA), images/s; (5) inference ms/image at the model's scale with 300 RoIs (XLA as in 4),
beside the paper's 170 ms (K40) and the TF OD API zoo's 92 ms (Titan X) for R-FCN
ResNet-101.

``--backend jax`` or ``torch`` runs the same check where TensorFlow is not installed (the GPU
machines this project can reach carry CUDA with JAX and PyTorch only): step 2 is skipped (the
suite needs TensorFlow), step 3 compares PSRoIPool and one ``train_on_batch`` on the GPU with
the CPU (``keras.device``), step 4 times ``train_on_batch`` (JAX: the whole step jitted, Keras's
default) under ``--policy`` (default there mixed_bfloat16) on one GPU, step 5 ``predict_on_batch``.
Besides the machine's own JAX/PyTorch it needs Keras 3 and its two pure-Python/binary extras
the image lacks (``keras``, ``namex``, ``optree``: about 3 MB of wheels) and rfcn_tf itself.

    python benchmarks/gpu_check.py --backend jax
    python benchmarks/gpu_check.py --backend jax --device cpu --config small --steps 3   # wiring
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ANCHORS = "paper: 170 ms/image (K40); TF OD API zoo rfcn_resnet101_coco: 92 ms (Titan X)"
TESTS = ["tests/test_psroi_pool.py", "tests/test_model.py", "tests/test_training.py"]


def select_devices(kind):
    """``"gpu"`` → the logical GPU names (SystemExit when there is none); ``"cpu"`` → CPU:0."""
    import tensorflow as tf

    if kind == "cpu":
        return ["/cpu:0"]
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        raise SystemExit(
            "gpu_check: no GPU is visible to TensorFlow (tensorflow[and-cuda] "
            "installed? CUDA_VISIBLE_DEVICES?); --device cpu checks the wiring only"
        )
    return [g.name for g in gpus]


def build(config_name, **changes):
    from rfcn_tf import RFCN, RFCNConfig

    config = (
        RFCNConfig.small(num_classes=5)
        if config_name == "small"
        else RFCNConfig(num_classes=20, backbone=config_name)
    )
    return RFCN(config=config.replace(**changes))


def batch(model, size, rng):
    import numpy as np

    side = model.config.min_side if isinstance(model.config.min_side, int) else max(model.config.min_side)
    images = rng.uniform(0, 255, (size, side, model.config.max_side, 3)).astype(np.float32)
    boxes = np.tile(np.array([[[20, 30, 120, 150], [60, 90, 180, 180]]], np.float32), (size, 1, 1))
    labels = np.tile(np.array([[1, 2]], np.int32), (size, 1))
    return images, {"boxes": boxes, "labels": labels}


def parity(device, config_name, rng):
    """Largest |device − CPU| of PSRoIPool (forward, gradient) and of one SGD step's weights
    (two independent runs, also when ``device`` is the CPU)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from rfcn_tf import PSRoIPool

    maps = tf.constant(rng.normal(size=(1, 38, 63, 49 * 21)), tf.float32)
    rois = tf.constant(rng.uniform(0, 600, (1, 300, 4)), tf.float32)
    rois = tf.concat([tf.minimum(rois[..., :2], rois[..., 2:]), tf.maximum(rois[..., :2], rois[..., 2:])], -1)
    results = []
    for where in (device, "/cpu:0"):
        with tf.device(where):
            with tf.GradientTape() as tape:
                tape.watch(maps)
                pooled = PSRoIPool(k=7)(maps, rois)
                loss = tf.reduce_sum(pooled * pooled)
            keras.utils.set_random_seed(0)
            model = build(config_name)
            model.compile(optimizer=keras.optimizers.SGD(1e-3))
            x, y = batch(model, 1, np.random.default_rng(1))
            model.fit(x, y, epochs=1, batch_size=1, verbose=0)
            results.append(
                (
                    pooled.numpy(),
                    tape.gradient(loss, maps).numpy(),
                    [v.numpy() for v in model.trainable_variables],
                )
            )
    (p, g, w), (pc, gc, wc) = results
    return (
        float(np.abs(p - pc).max()),
        float(np.abs(g - gc).max()),
        max(float(np.abs(a - b).max()) for a, b in zip(w, wc)),
    )


def train_images_per_s(devices, config_name, policy, xla, steps, rng):
    import keras
    import tensorflow as tf

    from rfcn_tf.distribution import set_policy

    set_policy(policy)
    strategy = (
        tf.distribute.MirroredStrategy(devices)
        if len(devices) > 1
        else tf.distribute.OneDeviceStrategy(devices[0])
    )
    with strategy.scope():
        model = build(config_name)
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=xla)
    x, y = batch(model, len(devices), rng)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(devices)).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    set_policy("float32")
    return steps * len(devices) / (time.perf_counter() - start)


def inference_ms(device, config_name, xla, rng, repeats=10):
    import tensorflow as tf

    with tf.device(device):
        model = build(config_name, rpn_post_nms_test=300)
        model.compile(jit_compile=xla)
        images, _ = batch(model, 1, rng)
        detect = tf.function(lambda x: model(x, training=False))
        for _ in range(2):
            detect(images)["num_detections"].numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            detect(images)["num_detections"].numpy()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def keras_devices(kind, backend):
    """Keras device names (``"gpu:0"``…) of ``kind`` under JAX or PyTorch; SystemExit when
    no GPU is visible."""
    if kind == "cpu":
        return ["cpu"]
    if backend == "jax":
        import jax

        count = len([d for d in jax.devices() if d.platform == "gpu"])
    else:
        import torch

        count = torch.cuda.device_count()
    if not count:
        raise SystemExit(f"gpu_check: no GPU is visible to {backend}; --device cpu checks the wiring only")
    return [f"gpu:{i}" for i in range(count)]


def keras_parity(device, config_name, backend, rng):
    """``parity`` under JAX or PyTorch: PSRoIPool forward and score-map gradient, and one
    ``train_on_batch``'s weights, on ``device`` against the CPU."""
    import keras
    import numpy as np

    from rfcn_tf import PSRoIPool

    maps = rng.normal(size=(1, 38, 63, 49 * 21)).astype(np.float32)
    corners = rng.uniform(0, 600, (1, 300, 4)).astype(np.float32)
    rois = np.concatenate(
        [np.minimum(corners[..., :2], corners[..., 2:]), np.maximum(corners[..., :2], corners[..., 2:])], -1
    )
    results = []
    # "cpu", not "cpu:0": under PyTorch, Keras 3.15 moves every variable read in a
    # keras.device("cpu:0") scope to a device torch calls different from the variable's,
    # and train_on_batch then finds no gradients.
    for where in (device, "cpu"):
        with keras.device(where):
            layer = PSRoIPool(k=7)
            pooled, grad = _pool_and_gradient(layer, maps, rois, backend)
            keras.utils.set_random_seed(0)
            model = build(config_name)
            model.compile(optimizer=keras.optimizers.SGD(1e-3))
            x, y = batch(model, 1, np.random.default_rng(1))
            model.train_on_batch(x, y)
            results.append((pooled, grad, [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]))
    (p, g, w), (pc, gc, wc) = results
    return (
        float(np.abs(p - pc).max()),
        float(np.abs(g - gc).max()),
        max(float(np.abs(a - b).max()) for a, b in zip(w, wc)),
    )


def _pool_and_gradient(layer, maps, rois, backend):
    """PSRoIPool(maps, rois) and d Σ pooled² / d maps, as numpy."""
    import numpy as np

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(m):
            return jnp.sum(layer(m, jnp.asarray(rois)) ** 2)

        m = jnp.asarray(maps)
        return np.asarray(layer(m, jnp.asarray(rois))), np.asarray(jax.grad(loss)(m))
    import keras

    m = keras.ops.convert_to_tensor(maps).detach().requires_grad_(True)
    pooled = layer(m, keras.ops.convert_to_tensor(rois))
    (pooled**2).sum().backward()
    return pooled.detach().cpu().numpy(), m.grad.cpu().numpy()


def keras_train_images_per_s(device, config_name, policy, steps, rng):
    import keras
    import numpy as np

    keras.mixed_precision.set_dtype_policy(policy)
    with keras.device(device):
        model = build(config_name)
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
        x, y = batch(model, 1, rng)
        for _ in range(2):  # compile (JAX) and warm up
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        np.asarray(loss[0])  # wait for the last step
        rate = steps / (time.perf_counter() - start)
    keras.mixed_precision.set_dtype_policy("float32")
    return rate


def keras_inference_ms(device, config_name, rng, repeats=10):
    import keras
    import numpy as np

    with keras.device(device):
        model = build(config_name, rpn_post_nms_test=300)
        images, _ = batch(model, 1, rng)
        for _ in range(2):
            np.asarray(model.predict_on_batch(images)["num_detections"])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.asarray(model.predict_on_batch(images)["num_detections"])
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main_keras(args):
    """The check under ``--backend jax`` / ``torch`` (no TensorFlow)."""
    import numpy as np

    rng = np.random.default_rng(0)
    devices = keras_devices(args.device, args.backend)
    print(f"[1/5] {args.backend} devices: {', '.join(devices)}", flush=True)
    print("[2/5] tests: skipped (the suite needs TensorFlow; run it where TensorFlow is)", flush=True)
    pool, grad, step = keras_parity(devices[0], args.config, args.backend, rng)
    print(
        f"[3/5] {devices[0]} vs CPU: PSRoIPool forward {pool:.2e}, gradient {grad:.2e}; "
        f"one training step's weights {step:.2e} (max abs difference)",
        flush=True,
    )
    policy = args.policy or "mixed_bfloat16"
    rate = keras_train_images_per_s(devices[0], args.config, policy, args.steps, rng)
    jitted = "the whole step jitted" if args.backend == "jax" else "eager"
    print(f"[4/5] training {args.config} ({policy}, 1 device, {jitted}): {rate:.2f} images/s", flush=True)
    ms = keras_inference_ms(devices[0], args.config, rng)
    print(f"[5/5] inference {args.config}, 300 RoIs: {ms:.1f} ms/image ({ANCHORS})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default="tensorflow")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--config", choices=("small", "resnet50", "resnet101"), default="resnet101")
    parser.add_argument(
        "--policy",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        help="default mixed_float16 (TensorFlow), mixed_bfloat16 (JAX, PyTorch)",
    )
    parser.add_argument(
        "--xla",
        choices=("on", "off"),
        default="on",
        help="XLA on the convolutions (compile(jit_compile=True); default on)",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)
    if args.backend != "tensorflow":
        os.environ["KERAS_BACKEND"] = args.backend
        return main_keras(args)
    args.policy = args.policy or "mixed_float16"

    import numpy as np

    rng = np.random.default_rng(0)
    devices = select_devices(args.device)
    print(f"[1/5] devices: {', '.join(devices)}", flush=True)
    if args.skip_tests:
        print("[2/5] tests: skipped")
    else:
        root = os.path.dirname(HERE)
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", *TESTS], cwd=root).returncode
        print(f"[2/5] tests: {'passed' if code == 0 else f'FAILED (exit {code})'}", flush=True)
    pool, grad, step = parity(devices[0], args.config, rng)
    print(
        f"[3/5] {devices[0]} vs CPU: PSRoIPool forward {pool:.2e}, gradient {grad:.2e}; "
        f"one training step's weights {step:.2e} (max abs difference)",
        flush=True,
    )
    xla = args.xla == "on"
    rate = train_images_per_s(devices, args.config, args.policy, xla, args.steps, rng)
    print(
        f"[4/5] training {args.config} ({args.policy}, {len(devices)} replica(s), XLA "
        f"{args.xla}): {rate:.2f} images/s",
        flush=True,
    )
    ms = inference_ms(devices[0], args.config, xla, rng)
    print(f"[5/5] inference {args.config}, 300 RoIs: {ms:.1f} ms/image ({ANCHORS})")


if __name__ == "__main__":
    main()
