"""R-FCN's convolutions against this CPU's float32 peak: multiply-adds per stage at the
model's scale, measured time, GFLOP/s and the fraction of a peak measured in the same run.

Stages (random weights, one image, the input the model's own resize + preprocess give):
conv1 (7×7 conv + max-pool), conv2, conv3, conv4 (the trunk, stride 16), conv5 (dilated, at
stride 16), head (RPN 3×3 + its 1×1s, the 1×1 reduce and the score-map 1×1s). A stage's
multiply-adds are Σ over its Conv2D layers of out_h·out_w·k_h·k_w·c_in·c_out (BatchNorm, ReLU
and adds are not counted: they are memory-bound and tiny in FLOPs); GFLOP/s = 2 × MACs /
time. "all" is the whole convolutional graph in one call (what inference runs), beside the
sum of the stages run separately.

``--weights``: the stages as ``model.predict`` runs them (``variables``) or as
``rfcn_tf.freeze_for_inference`` and the SavedModel export do (``frozen``: weights as graph
constants, BatchNorms folded into the convolutions). One per run: TF's oneDNN primitive cache
is keyed by a convolution's shapes, so whichever graph runs first would set the filter layout
for both. The BatchNorm statistics and conv biases are made trained-like
(``timing.trained_like``): with random-init ones grappler drops most of each BatchNorm.

The peak is the best of a large float32 matmul (``--matmul`` n×n×n) and a conv4-sized 3×3
convolution (256 → 256 channels at 1/16 of the image), each a ``tf.function`` timed like the
stages; measured before and after the stages, so a change in the machine's load shows.

    python benchmarks/bench_flops.py --backbone resnet50 --repeats 5 --weights variables
    python benchmarks/bench_flops.py --backbone resnet50 --repeats 5 --weights frozen
"""

import argparse
import statistics

import keras
import numpy as np
import tensorflow as tf
from timing import environment, interleaved_times, trained_like

import rfcn_tf
from rfcn_tf.export.folding import fold_batchnorms, folded_trace

# The last layer of each trunk stage (keras.applications ResNet names).
TRUNK_STAGES = {
    "resnet50": ("pool1_pool", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
    "resnet101": ("pool1_pool", "conv2_block3_out", "conv3_block4_out", "conv4_block23_out"),
}
HEAD_LAYERS = ("rpn_conv", "rpn_objectness", "rpn_deltas", "reduce", "class_maps", "box_maps")


def conv_macs(layer, output_shape):
    """Multiply-adds of one Conv2D layer for its (concrete) output shape [B, h, w, c_out]."""
    kh, kw, cin_per_group, cout = layer.kernel.shape
    return int(np.prod(output_shape[:3])) * kh * kw * cin_per_group * cout


def trunk_stages(model, names):
    """[(stage name, keras.Model, its input tensor in the trunk's graph)] from the trunk's
    input through each stage's last layer."""
    trunk = model.trunk
    ends = [trunk.input] + [trunk.get_layer(name).output for name in names]
    return [
        (f"conv{i + 1}", keras.Model(ends[i], ends[i + 1], name=f"stage{i + 1}"), ends[i])
        for i in range(len(names))
    ]


def stage_macs(stage, start, x):
    """Σ conv MACs of a stage model on input ``x`` (output shapes from a real run); start:
    the stage's input tensor in the graph its layers were built in (Keras clones a
    sub-model's intermediate input)."""
    convs = [layer for layer in stage.layers if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(start, [layer.output for layer in convs])
    outputs = probe(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return sum(conv_macs(layer, out.shape) for layer, out in zip(convs, outputs))


def head(model):
    """The head's convolutions as one function of (conv4, conv5 output)."""
    layer = {name: model.get_layer(name) for name in HEAD_LAYERS}

    def run(conv4, conv5):
        rpn = layer["rpn_conv"](conv4)
        reduced = layer["reduce"](conv5)
        return (
            layer["rpn_objectness"](rpn),
            layer["rpn_deltas"](rpn),
            layer["class_maps"](reduced),
            layer["box_maps"](reduced),
        )

    def macs(conv4, conv5):
        rpn = layer["rpn_conv"](conv4)
        reduced = layer["reduce"](conv5)
        total = conv_macs(layer["rpn_conv"], rpn.shape) + conv_macs(layer["reduce"], reduced.shape)
        for name, source in (
            ("rpn_objectness", rpn),
            ("rpn_deltas", rpn),
            ("class_maps", reduced),
            ("box_maps", reduced),
        ):
            total += conv_macs(layer[name], layer[name](source).shape)
        return total

    return run, macs


def peak_calls(n, feature_shape):
    a = tf.random.normal([n, n])
    features = tf.random.normal(feature_shape)
    kernel = tf.random.normal([3, 3, feature_shape[-1], feature_shape[-1]])
    matmul = tf.function(lambda: tf.linalg.matmul(a, a))
    conv = tf.function(lambda: tf.nn.conv2d(features, kernel, 1, "SAME"))
    conv_flops = 2 * np.prod(feature_shape[:3]) * 9 * feature_shape[-1] ** 2
    return {"matmul": (matmul, (), 2 * n**3), "conv3x3": (conv, (), conv_flops)}


def measure_peak(calls, repeats):
    times = interleaved_times({k: (fn, args) for k, (fn, args, _) in calls.items()}, repeats, 2)
    return {k: calls[k][2] / (min(t) / 1e3) / 1e9 for k, t in times.items()}


def frozen_call(fn, folded):
    """``fn`` as ``rfcn_tf.freeze_for_inference`` runs the model: every variable a constant of
    the graph, the BatchNorms folded (``folded``: ``rfcn_tf.export.folding.fold_batchnorms``)."""

    @tf.function
    def run(*args):
        with folded_trace(folded):
            return fn(*args)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TRUNK_STAGES))
    parser.add_argument("--size", type=int, nargs=2, default=[600, 1000], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matmul", type=int, default=2048, help="n of the peak's n×n matmul")
    parser.add_argument(
        "--weights",
        choices=["variables", "frozen"],
        default="frozen",
        help="time the graph as model.predict runs it or as freeze_for_inference "
        "does (one per run: module doc)",
    )
    parser.add_argument(
        "--inter-op",
        type=int,
        default=1,
        help="TF inter-op threads (TF's default, one per core, runs the head's "
        "independent convolutions at once and oversubscribes the cores)",
    )
    args = parser.parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)

    model = trained_like(rfcn_tf.RFCN(num_classes=20, backbone=args.backbone))
    height, width = args.size
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    front = keras.Model(model.input, model.get_layer("preprocess").output)
    x = front({"images": tf.constant(image), "image_sizes": None})

    # Each stage's input is the previous stage's output: compute them once.
    stages = trunk_stages(model, TRUNK_STAGES[args.backbone])
    inputs, macs, current = {}, {}, x
    for name, stage, start in stages:
        inputs[name], macs[name] = current, stage_macs(stage, start, current)
        current = stage(current)
    conv4 = current
    inputs["conv5"], macs["conv5"] = conv4, stage_macs(model.conv5, model.conv5.input, conv4)
    conv5 = model.conv5(conv4)
    run_head, head_macs = head(model)
    macs["head"] = head_macs(conv4, conv5)
    macs["all"] = sum(macs.values())

    plain = {name: (lambda t, s=stage: s(t, training=False), (inputs[name],)) for name, stage, _ in stages}
    plain["conv5"] = (lambda t: model.conv5(t, training=False), (conv4,))
    plain["head"] = (run_head, (conv4, conv5))
    plain["all"] = (lambda t: model.convolutions(t, training=False), (x,))
    if args.weights == "variables":
        calls = {name: (tf.function(fn), args) for name, (fn, args) in plain.items()}
    else:
        folded = fold_batchnorms(model)
        calls = {name: (frozen_call(fn, folded), args) for name, (fn, args) in plain.items()}
    peaks = peak_calls(args.matmul, [1, conv4.shape[1], conv4.shape[2], 256])

    before = measure_peak(peaks, args.repeats)
    times = interleaved_times(calls, args.repeats, 1)
    after = measure_peak(peaks, args.repeats)
    peak = max(*before.values(), *after.values())

    print(
        f"convolutions of R-FCN {args.backbone} at {height}x{width} (input "
        f"{x.shape[1]}x{x.shape[2]}), weights {args.weights}, median of {args.repeats}, "
        f"{args.inter_op} inter-op thread(s)  {environment()}"
    )
    print(
        "peak GFLOP/s (best of the runs), before / after the stages: "
        + ", ".join(f"{k} {before[k]:.0f} / {after[k]:.0f}" for k in before)
        + f"; peak = {peak:.0f}"
    )
    print(f"{'stage':<7} {'GMACs':>7} {'ms':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for name in calls:
        ms = statistics.median(times[name])
        rate = 2 * macs[name] / (ms / 1e3) / 1e9
        print(f"{name:<7} {macs[name] / 1e9:>7.2f} {ms:>8.1f} {rate:>8.0f} {rate / peak:>8.0%}")
    stage_sum = sum(statistics.median(times[name]) for name in calls if name != "all")
    print(f"sum of the stages run one by one: {stage_sum:.1f} ms")


if __name__ == "__main__":
    main()
