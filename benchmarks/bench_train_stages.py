"""Where a TensorFlow training step goes: its stages timed one by one, beside the whole step
and inference, on one image (random weights with trained-like BatchNorm statistics, random
image, ``--boxes`` ground-truth boxes).

Stages, each a ``tf.function`` run on the previous stage's real outputs (training mode):

- ``front``: the model's resize + preprocess;
- ``convs fwd``: the convolutions (trunk, RPN, conv5, score maps), forward only;
- ``convs fwd+bwd``: the same with the gradient of every trainable variable they hold (a
  random cotangent on their outputs);
- ``proposals``: anchors, box decoding, top-N, NMS (no gradient flows through them);
- ``loss fwd``: ``compute_loss`` on the raw tensors — anchor and RoI targets, the per-RoI
  step (PSRoIPool + vote for R-FCN), OHEM or the random sampler, the four losses;
- ``loss fwd+bwd``: the same with its gradient to the convolutions' outputs (and the
  per-RoI weights of the Faster R-CNN head);
- ``psroi fwd+bwd``: the per-RoI step alone on the training RoIs (part of the loss);
- ``optimizer``: ``optimizer.apply`` of one gradient per trainable variable;
- ``step``: ``model.train_on_batch`` (everything above in one graph, plus Keras's metrics);
- ``inference``: ``model(x, training=False)`` in a ``tf.function``.

The convolutions' multiply-adds (Σ out_h·out_w·k_h·k_w·c_in·c_out, as in ``bench_flops.py``)
give GFLOP/s; the backward pass of a convolution costs about twice its forward (the input and
the filter gradients). Medians over ``--repeats`` interleaved rounds.

    python benchmarks/bench_train_stages.py --backbone resnet50 --repeats 5
    python benchmarks/bench_train_stages.py --small --size 192 192 --repeats 20
"""

import argparse
import statistics

import keras
import numpy as np
import tensorflow as tf
from timing import environment, interleaved_times, trained_like

import rfcn_tf


def conv_macs(function, x):
    """Σ multiply-adds of the Conv2D ops in the graph of ``function(x)`` (a ``tf.function``),
    from their static output and filter shapes."""
    total = 0
    for op in function.get_concrete_function(x).graph.get_operations():
        if op.type == "Conv2D":
            kh, kw, cin, cout = op.inputs[1].shape
            total += int(np.prod(op.outputs[0].shape[:3])) * kh * kw * cin * cout
    return total


def ground_truth(rng, count, height, width):
    """``count`` random boxes of 5–40 % of the image's sides, yxyx pixels, labels 1..5."""
    h = rng.uniform(0.05, 0.4, count) * height
    w = rng.uniform(0.05, 0.4, count) * width
    y0, x0 = rng.uniform(0, height - h), rng.uniform(0, width - w)
    boxes = np.stack([y0, x0, y0 + h, x0 + w], -1)[None].astype(np.float32)
    return {"boxes": boxes, "labels": rng.integers(1, 6, (1, count)).astype(np.int32)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    parser.add_argument("--small", action="store_true", help="the small CPU configuration instead")
    parser.add_argument("--head", default="rfcn", choices=["rfcn", "faster_rcnn"])
    parser.add_argument("--size", type=int, nargs=2, default=[600, 1000], metavar=("H", "W"))
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--mixed-precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"]
    )
    args = parser.parse_args(argv)
    keras.mixed_precision.set_global_policy(args.mixed_precision)

    if args.small:
        config = rfcn_tf.RFCNConfig.small(num_classes=20, head=args.head)
    else:
        config = rfcn_tf.RFCNConfig(num_classes=20, backbone=args.backbone, head=args.head)
    model = trained_like(rfcn_tf.RFCN(config=config))
    optimizer = keras.optimizers.AdamW(1e-4) if args.optimizer == "adamw" else keras.optimizers.SGD(1e-3, 0.9)
    model.compile(optimizer=optimizer)
    rng = np.random.default_rng(0)
    height, width = args.size
    image = tf.constant(rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8))
    y = ground_truth(rng, args.boxes, height, width)
    inputs = {"images": image, "image_sizes": None}

    front = tf.function(keras.Model(model.input, model.get_layer("preprocess").output))
    x = front(inputs)
    convs = tf.function(lambda x: model.convolutions(x, training=True))
    conv_out = convs(x)
    conv_vars = model.convolutions.trainable_variables
    cotangent = {k: tf.random.normal(tf.shape(v), dtype=v.dtype) for k, v in conv_out.items()}

    @tf.function
    def convs_backward(x):
        with tf.GradientTape() as tape:
            out = model.convolutions(x, training=True)
            total = tf.add_n([tf.reduce_sum(tf.cast(out[k] * cotangent[k], tf.float32)) for k in out])
        return tape.gradient(total, conv_vars)

    features = tf.function(lambda inputs: model.features_model(inputs, training=True))
    raw = {k: tf.identity(v) for k, v in features(inputs).items()}
    anchor_grid, proposal_layer = model.get_layer("anchors"), model.get_layer("proposals")
    proposals = tf.function(
        lambda raw: proposal_layer(
            raw["rpn_logits"],
            raw["rpn_deltas"],
            anchor_grid(raw["rpn_logits"]),
            raw["image_sizes"],
            training=True,
        )
    )
    loss = tf.function(lambda raw: model.compute_loss(inputs, y, raw))
    watched = ["rpn_logits", "rpn_deltas", *model._map_names]
    head_vars = model.roi_head.trainable_variables

    @tf.function
    def loss_backward(raw):
        with tf.GradientTape() as tape:
            tape.watch([raw[k] for k in watched])
            total = model.compute_loss(inputs, y, raw)
        return tape.gradient(total, [raw[k] for k in watched] + head_vars)

    rois = raw["proposals"]
    maps = {k: raw[k] for k in model._map_names}

    @tf.function
    def psroi_backward(maps, rois):
        with tf.GradientTape() as tape:
            tape.watch(list(maps.values()))
            logits, deltas = model.roi_head({**maps, "rois": rois}, training=True)
            total = tf.reduce_sum(logits) + tf.reduce_sum(deltas)
        return tape.gradient(total, list(maps.values()) + head_vars)

    grads = [tf.random.normal(v.shape) * 1e-6 for v in model.trainable_variables]
    apply = tf.function(lambda: optimizer.apply(grads, model.trainable_variables))
    inference = tf.function(lambda i: model(i, training=False))

    def step():
        return model.train_on_batch(image, y)

    calls = {
        "front": (front, (inputs,)),
        "convs fwd": (convs, (x,)),
        "convs fwd+bwd": (convs_backward, (x,)),
        "proposals": (proposals, (raw,)),
        "loss fwd": (loss, (raw,)),
        "loss fwd+bwd": (loss_backward, (raw,)),
        "psroi fwd+bwd": (psroi_backward, (maps, rois)),
        "optimizer": (apply, ()),
        "step": (step, ()),
        "inference": (inference, (inputs,)),
    }
    times = interleaved_times(calls, args.repeats, 2)
    ms = {name: statistics.median(t) for name, t in times.items()}
    spread = {name: (min(t), max(t)) for name, t in times.items()}
    gmacs = conv_macs(convs, x) / 1e9

    name = "small" if args.small else args.backbone
    print(
        f"training step of R-FCN {name} ({args.head} head, {args.optimizer}, {args.mixed_precision}) "
        f"at {height}x{width} "
        f"(input {x.shape[1]}x{x.shape[2]}), {args.boxes} boxes, {config.rpn_post_nms_train} "
        f"training proposals, median of {args.repeats}  {environment()}"
    )
    print(f"{'stage':<15} {'ms':>9} {'min–max':>17} {'of step':>8}")
    for stage in calls:
        low, high = spread[stage]
        print(f"{stage:<15} {ms[stage]:>9.1f} {low:>8.1f}–{high:<8.1f} {ms[stage] / ms['step']:>8.0%}")
    parts = sum(ms[name] for name in ("front", "convs fwd+bwd", "proposals", "loss fwd+bwd", "optimizer"))
    print(
        f"front + convs fwd+bwd + proposals + loss fwd+bwd + optimizer = {parts:.1f} ms; "
        f"the step {ms['step']:.1f}"
    )
    forward, both = ms["convs fwd"], ms["convs fwd+bwd"]
    print(
        f"convolutions: {gmacs:.1f} GMACs; forward {2 * gmacs / (forward / 1e3):.0f} GFLOP/s, "
        f"forward + backward (≈ 3× the forward's FLOPs) {6 * gmacs / (both / 1e3):.0f} GFLOP/s; "
        f"backward / forward time {(both - forward) / forward:.2f} (FLOPs: 2); "
        f"step / inference {ms['step'] / ms['inference']:.2f}"
    )


if __name__ == "__main__":
    main()
