"""The pooling area's layers run under one Keras backend (``tests/test_backends_pooling.py``
calls ``all_cases`` once per backend through ``backend_helpers.on_backend``): forward values
and score-map gradients of PSRoIPool, RoIAlign and the two heads' ``per_roi``, and
ImageResizer / Preprocess outputs, on inputs drawn here from fixed seeds (so every backend
sees the same ones)."""

import pathlib
import tempfile

import keras
import numpy as np
from keras import ops

from tests import reference_psroi as ref
from tests.layer_harness import run_layer_test

# (mode, k, n, depth, height, width, batch, spatial_scale)
PSROI_CASES = [
    ("align", 1, 1, 3, 5, 6, 2, 1 / 16),
    ("align", 3, 2, 2, 6, 7, 2, 1 / 16),
    ("align", 3, 3, 2, 4, 4, 2, 0.5),  # interior samples: the replicated-border path
    ("align", 7, 2, 2, 5, 9, 1, 1 / 16),
    ("align", 3, 2, 2, 1, 6, 2, 1 / 16),  # a one-pixel axis: the zero row
    ("crop", 3, 2, 2, 6, 7, 2, 1 / 16),
    ("crop", 7, 1, 2, 8, 6, 1, 1 / 8),
    ("crop", 3, 3, 2, 4, 4, 2, 0.5),
]

# (min_side, max_side, training, batch, height, width)
RESIZE_CASES = [
    (24, 40, False, 1, 30, 50),  # shrink
    (192, 320, False, 2, 100, 130),  # enlarge, two images
    (192, 320, False, 1, 400, 300),  # shrink, portrait
    (24, 40, False, 2, 24, 40),  # at scale: passes through
    ((16, 24), 40, True, 1, 16, 27),  # multi-scale training: already at a min_side's size
    ((16, 24), 40, False, 1, 16, 27),  # ... resized to the largest at inference
]


def psroi_inputs(index):
    """``(maps [B, H, W, k²D], rois [B, 12, 4], weights [B, 12, k, k, D])`` of a case."""
    _, k, _, depth, height, width, batch, scale = PSROI_CASES[index]
    rng = np.random.default_rng([31, index])
    maps = rng.normal(size=(batch, height, width, k * k * depth)).astype(np.float32)
    rois = ref.roi_kinds(rng, height, width, scale, batch)
    weights = rng.normal(size=(batch, rois.shape[1], k, k, depth)).astype(np.float32)
    return maps, rois, weights


def roi_align_inputs():
    rng = np.random.default_rng(41)
    features = rng.normal(size=(2, 6, 8, 5)).astype(np.float32)
    rois = rng.uniform(-20, 90, size=(2, 7, 4)).astype(np.float32)  # inside, across, outside
    rois[..., 2:] = rois[..., :2] + rng.uniform(0, 60, size=(2, 7, 2))
    rois[0, 0] = [10, 10, 10, 10]  # zero area
    weights = rng.normal(size=(14, 4, 4, 5)).astype(np.float32)
    return features, rois, weights


def head_inputs():
    """Maps of a 3-class R-FCN head (k = 3) and a Faster R-CNN head's conv4, RoIs, weights."""
    rng = np.random.default_rng(43)
    maps = {
        "class_maps": rng.normal(size=(2, 6, 7, 9 * 4)).astype(np.float32),
        "box_maps": rng.normal(size=(2, 6, 7, 9 * 4)).astype(np.float32),
        "conv4": rng.normal(size=(2, 6, 7, 5)).astype(np.float32),
    }
    rois = ref.roi_kinds(rng, 6, 7, 1 / 16, 2)
    weights = rng.normal(size=(2, rois.shape[1], 4)).astype(np.float32)
    return maps, rois, weights


def resize_inputs(index):
    _, _, _, batch, height, width = RESIZE_CASES[index]
    return np.random.default_rng([47, index]).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)


def preprocess_inputs():
    rng = np.random.default_rng(53)
    images = rng.uniform(0, 255, (2, 20, 30, 3)).astype(np.float32)
    return images, np.array([[20, 30], [15, 25]], np.int32)


def harness_cases():
    """``tests/layer_harness`` cases of this area's layers (``tests/test_layers.py`` runs them
    under TensorFlow, ``all_cases`` under its backend)."""
    from rfcn_tf.layers import ImageResizer, Preprocess, PSRoIPool, RoIAlign, UnflattenRoIs, Vote
    from tests.layer_harness import LayerCase

    rng = np.random.default_rng(61)

    def floats(*shape):
        return rng.normal(size=shape).astype(np.float32)

    def rois(count, height, width):
        corners = np.sort(rng.uniform(0, 1, (1, count, 2, 2)), axis=2) * [height, width]
        return corners.reshape(1, count, 4).astype(np.float32)  # [ymin, xmin, ymax, xmax]

    return {
        "ImageResizer": LayerCase(
            ImageResizer,
            dict(min_side=24, max_side=40),
            (rng.uniform(0, 255, (1, 30, 50, 3)).astype(np.float32),),
            symbolic=((None, None, None, 3),),
            mixed_outputs=("float32", "int32", "float32"),
        ),
        "Preprocess": LayerCase(
            Preprocess,
            dict(stride=8),
            (
                rng.uniform(0, 255, (2, 20, 30, 3)).astype(np.float32),
                np.array([[20, 30], [15, 25]], np.int32),
            ),
            symbolic=((None, None, None, 3), (None, 2)),
            mixed_outputs=("float16",),
        ),
        "Preprocess per image": LayerCase(
            Preprocess,
            dict(stride=8, normalization="per_image"),
            (
                rng.uniform(0, 255, (2, 20, 30, 3)).astype(np.float32),
                np.array([[20, 30], [15, 25]], np.int32),
            ),
            symbolic=((None, None, None, 3), (None, 2)),
            mixed_outputs=("float16",),
        ),
        "PSRoIPool": LayerCase(
            PSRoIPool,
            dict(k=3, spatial_scale=1 / 8),
            (floats(1, 6, 8, 9 * 2), rois(5, 48, 64)),
            symbolic=((None, None, None, 18), (None, None, 4)),
            mixed_outputs=("float16",),
            mixed_inputs=("float16", None),
        ),
        "RoIAlign": LayerCase(
            RoIAlign,
            dict(crop_size=4, spatial_scale=1 / 8),
            (floats(1, 6, 8, 5), rois(5, 48, 64)),
            symbolic=((None, None, None, 5), (None, None, 4)),
            mixed_outputs=("float16",),
            mixed_inputs=("float16", None),
        ),
        "Vote": LayerCase(
            Vote, {}, (floats(1, 5, 3, 3, 2),), symbolic=((None, None, 3, 3, 2),), mixed_outputs=("float16",)
        ),
        "UnflattenRoIs": LayerCase(
            UnflattenRoIs,
            {},
            (floats(5, 3), rois(5, 48, 64)),
            symbolic=((None, 3), (None, None, 4)),
            mixed_outputs=("float32",),
            mixed_inputs=("float16", None),
        ),
    }


def value_and_grad(fn, x, weights):
    """``fn(x)`` and the gradient of ``sum(fn(x) · weights)`` with respect to ``x``, as
    numpy, by the backend's own autodiff (JAX: jitted)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(x):
            out = fn(x)
            return ops.sum(out * weights), out

        (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    elif backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        out = fn(x)
        (out * torch.tensor(weights)).sum().backward()
        grad = x.grad
    else:
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
            loss = tf.reduce_sum(out * weights)
        grad = tape.gradient(loss, x)
    return ops.convert_to_numpy(out), ops.convert_to_numpy(grad)


def all_cases(implementation="crop_and_resize"):
    """Every case under the current backend → ``{name: array}``."""
    from rfcn_tf.backbones import build_backbone
    from rfcn_tf.layers import ImageResizer, Preprocess, PSRoIPool, RoIAlign, Vote
    from rfcn_tf.layers.heads import FasterRCNNHead, RFCNHead

    out = {}
    for i, (mode, k, n, _, _, _, _, scale) in enumerate(PSROI_CASES):
        maps, rois, weights = psroi_inputs(i)
        layer = PSRoIPool(
            k=k, spatial_scale=scale, samples_per_bin=n, mode=mode, implementation=implementation
        )
        out[f"psroi{i}"], out[f"psroi{i}_grad"] = value_and_grad(
            lambda m, layer=layer, rois=rois: layer(m, rois), maps, weights
        )

    features, rois, weights = roi_align_inputs()
    align = RoIAlign(crop_size=4, spatial_scale=1 / 8, implementation=implementation)
    out["roi_align"], out["roi_align_grad"] = value_and_grad(lambda f: align(f, rois), features, weights)

    maps, rois, weights = head_inputs()
    out["vote"] = ops.convert_to_numpy(Vote()(maps["class_maps"].reshape(2, 6, 7, 9, 4)[:, :, :, :1]))
    rfcn = RFCNHead(3, conv5=None, k=3, implementation=implementation)
    out["rfcn_class"], out["rfcn_class_grad"] = value_and_grad(
        lambda m: rfcn.per_roi({**maps, "class_maps": m}, rois)[0], maps["class_maps"], weights
    )
    out["rfcn_box"] = ops.convert_to_numpy(rfcn.per_roi(maps, rois)[1])
    conv5 = keras.Sequential(
        [keras.Input((None, None, 5)), keras.layers.Conv2D(6, 3, strides=2, padding="same")]
    )
    faster = FasterRCNNHead(3, conv5, crop_size=6, implementation=implementation)
    faster.per_roi(maps, rois)  # builds the head's layers before any jit
    rng = np.random.default_rng(59)
    for variable in conv5.weights + faster.class_logits.weights + faster.box_deltas.weights:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32) * 0.3)
    out["faster_box"] = ops.convert_to_numpy(faster.per_roi(maps, rois)[1])
    out["faster_class"], out["faster_conv4_grad"] = value_and_grad(
        lambda m: faster.per_roi({"conv4": m}, rois)[0], maps["conv4"], weights
    )

    for i, (min_side, max_side, training, *_) in enumerate(RESIZE_CASES):
        images, sizes, scales = ImageResizer(min_side, max_side)(resize_inputs(i), training=training)
        for name, value in (("images", images), ("sizes", sizes), ("scales", scales)):
            out[f"resize{i}_{name}"] = ops.convert_to_numpy(value)
    padded = resize_inputs(3)
    at_scale = np.array([[24, 40], [24, 30]], np.int32)
    padded[1, :, 30:] = 0
    for name, value in zip(("images", "sizes", "scales"), ImageResizer(24, 40)(padded, at_scale)):
        out[f"padded_{name}"] = ops.convert_to_numpy(value)
    out["preprocess"] = ops.convert_to_numpy(Preprocess(stride=8)(*preprocess_inputs()))
    per_image = Preprocess(stride=8, normalization="per_image")
    out["preprocess_per_image"] = ops.convert_to_numpy(per_image(*preprocess_inputs()))

    try:  # a padded batch not at scale: resized on TensorFlow, refused elsewhere
        ImageResizer(24, 40)(resize_inputs(0), np.array([[30, 50]], np.int32))
        out["not_at_scale_error"] = np.array("")
    except ValueError as error:
        out["not_at_scale_error"] = np.array(str(error))

    # In a functional model on images of any size (JAX infers shapes symbolically).
    images = keras.Input((None, None, 3))
    resized, sizes, _ = ImageResizer(24, 40)(images)
    model = keras.Model(images, Preprocess(8)(resized, sizes))
    out["functional"] = model.predict(resize_inputs(0), verbose=0)

    with tempfile.TemporaryDirectory() as directory:  # raises on any failed check
        for case in harness_cases().values():
            run_layer_test(case, pathlib.Path(directory))

    trunk, conv5 = build_backbone("small", output_stride=8)  # random weights: shapes only
    out["small_backbone"] = ops.convert_to_numpy(conv5(trunk(Preprocess(8)(*preprocess_inputs()))))
    return out
