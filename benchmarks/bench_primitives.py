"""Where a TensorFlow training step goes, primitive by primitive: oneDNN's own timing of every
convolution (forward, backward to the data, backward to the weights), BatchNorm, reorder and
pooling in ``train_on_batch``, against this CPU's float32 peak measured in the same run.

The step is ``bench_torchvision.py``'s ``train_step_finetune`` (``--recipe finetune``: every
BatchNorm frozen, conv1 + res2 frozen, as from pretrained weights) or ``train_step``
(``--recipe full``: everything trains): R-FCN, 20 classes, its seeded 600×1000 image and
five boxes, 300 training proposals, SGD (learning rate 1e-3, momentum 0.9), random weights.

It runs in a child process with ``ONEDNN_VERBOSE=1`` (oneDNN reads it once, when TensorFlow
loads it), which prints a line per primitive call with its time in ms; the child marks where
each timed step starts and ends. A convolution's multiply-adds come from its problem
descriptor (mb·oc·oh·ow·(ic/g)·kh·kw), the same in all three directions; GFLOP/s = 2 × MACs /
time. The peak is the best float32 rate seen in the run: ``bench_flops.py``'s matmul (n×n) and
3×3 conv at conv4's size, measured in this process after the child ends, and the step's own
best group of convolutions (some of oneDNN's kernels beat both). "Outside oneDNN" is the step's wall time
less every primitive's: TensorFlow's own kernels (BatchNorm, ReLU, adds, bias gradients), the
detector's ops, the optimizer and the runtime. Each figure is the median over ``--repeats``
steps; printing the verbose lines makes a step a little slower than ``bench_torchvision.py``'s.

The last line is a bound: the step's convolutions alone, every one at the peak, nothing else.

    python benchmarks/bench_primitives.py --recipe finetune --repeats 3
"""

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time

START, END = "#step-start", "#step-end"
DIRECTIONS = {
    "forward_training": "forward",
    "forward_inference": "forward",
    "backward_data": "backward to data",
    "backward_weights": "backward to weights",
}
_PROBLEM = re.compile(r"(mb|g|ic|oc|oh|ow|kh|kw)(\d+)")


def conv_macs(problem):
    """Multiply-adds of a oneDNN convolution from its problem descriptor, e.g.
    ``mb1_ic64oc256_ih150oh150kh1sh1dh0ph0_iw250ow250kw1sw1dw0pw0`` (groups ``g``: each output
    channel sees ic/g inputs)."""
    size = {"mb": 1, "g": 1, "kh": 1, "kw": 1, "oh": 1}
    size.update({k: int(v) for k, v in _PROBLEM.findall(problem)})
    per_output = size["ic"] // size["g"] * size["kh"] * size["kw"]
    return size["mb"] * size["oc"] * size["oh"] * size["ow"] * per_output


def parse(lines):
    """oneDNN verbose output → one list of primitive calls per marked step, each call a dict
    (``kind``, ``impl``, ``direction``, ``ms``, ``macs``), and the steps' wall times in ms."""
    steps, walls, current = [], [], None
    for line in lines:
        line = line.strip()
        if line.startswith(START):
            current = []
        elif line.startswith(END):
            steps.append(current)
            walls.append(float(line.split()[1]))
            current = None
        elif current is not None and line.startswith("onednn_verbose") and ",exec," in line:
            fields = line.split(",")
            kind, impl, direction = fields[5], fields[6], fields[7]
            current.append(
                {
                    "kind": kind,
                    "impl": impl,
                    "direction": DIRECTIONS.get(direction, direction),
                    "ms": float(fields[-1]),
                    "macs": conv_macs(fields[-2]) if kind == "convolution" else 0,
                }
            )
    return steps, walls


def summarise(calls):
    """``{(kind, direction, impl): [count, ms, macs]}`` for one step's calls."""
    groups = collections.defaultdict(lambda: [0, 0.0, 0])
    for call in calls:
        group = groups[(call["kind"], call["direction"], call["impl"])]
        group[0] += 1
        group[1] += call["ms"]
        group[2] += call["macs"]
    return groups


def child(args):
    """The training step, ``--repeats`` times after two untimed ones, each between markers."""
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bench_torchvision import CLASSES, LEARNING_RATE, MOMENTUM, ROIS, ground_truth, inputs

    import rfcn_tf

    image = tf.constant(inputs()[0])
    boxes, labels = ground_truth()
    y = {"boxes": boxes[None], "labels": labels[None].astype(np.int32)}
    finetune = args.recipe == "finetune"
    model = rfcn_tf.RFCN(
        num_classes=CLASSES - 1,
        backbone=args.backbone,
        rpn_post_nms_train=ROIS,
        freeze_batchnorm=finetune,
        freeze_stem=finetune,
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM))
    for _ in range(2):
        model.train_on_batch(image, y)
    for _ in range(args.repeats):
        print(START, flush=True)
        start = time.perf_counter()
        model.train_on_batch(image, y)
        print(END, (time.perf_counter() - start) * 1e3, flush=True)


def run_child(args):
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.abspath(__file__), "--child"]
    command += ["--recipe", args.recipe, "--backbone", args.backbone]
    command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the training step's process failed:\n{done.stderr[-3000:]}")
    steps, walls = parse(done.stdout.splitlines())
    if not any(call["kind"] == "convolution" for step in steps for call in step):
        raise SystemExit(
            "oneDNN printed no convolution: this TensorFlow runs without oneDNN "
            "(TF_ENABLE_ONEDNN_OPTS=0, or a CPU it does not use oneDNN on)"
        )
    return steps, walls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="finetune", choices=["finetune", "full"])
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="TF intra-op threads")
    parser.add_argument("--matmul", type=int, default=4096, help="n of the peak's n×n matmul")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    steps, walls = run_child(args)
    import tensorflow as tf
    from bench_flops import measure_peak, peak_calls
    from timing import environment

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    measured = measure_peak(peak_calls(args.matmul, [1, 38, 63, 256]), 5)

    summaries = [summarise(step) for step in steps]
    keys = sorted({key for s in summaries for key in s}, key=lambda k: (k[0] != "convolution", k))

    def median(key, field):
        return statistics.median(s[key][field] if key in s else 0 for s in summaries)

    own = max(2 * median(k, 2) / median(k, 1) / 1e6 for k in keys if median(k, 2) >= 1e9)
    peak = max(*measured.values(), own)

    print(
        f"training step ({args.recipe} recipe) of R-FCN {args.backbone}, SGD, 600x1000, 300 "
        f"proposals, {args.threads} threads: oneDNN primitives, median of {len(steps)} steps; "
        f"peak {peak:.0f} GFLOP/s (matmul {measured['matmul']:.0f}, conv3x3 "
        f"{measured['conv3x3']:.0f}, the step's best group {own:.0f})  {environment()}"
    )
    print(
        f"{'primitive':<12} {'direction':<20} {'implementation':<50} {'calls':>5} {'GMACs':>7} "
        f"{'ms':>8} {'GFLOP/s':>8} {'of peak':>8}"
    )
    for key in keys:
        kind, direction, impl = key
        ms, macs = median(key, 1), median(key, 2)
        rate = f"{2 * macs / ms / 1e6:>8.0f} {2 * macs / ms / 1e6 / peak:>8.0%}" if macs else ""
        print(
            f"{kind:<12} {direction:<20} {impl:<50} {median(key, 0):>5.0f} {macs / 1e9:>7.1f} "
            f"{ms:>8.1f} {rate}"
        )

    def total(select, field):
        return statistics.median(sum(v[field] for k, v in s.items() if select(k)) for s in summaries)

    def line(label, select):
        ms, macs = total(select, 1), total(select, 2)
        rate = 2 * macs / ms / 1e6
        print(
            f"{label:<34} {macs / 1e9:>6.1f} GMACs {ms:>8.1f} ms {rate:>5.0f} GFLOP/s "
            f"({rate / peak:.0%} of peak)"
        )
        return macs

    print()
    for direction in ("forward", "backward to data", "backward to weights"):
        line(f"convolutions, {direction}", lambda k, d=direction: k[0] == "convolution" and k[1] == d)
    macs = line("convolutions, all directions", lambda k: k[0] == "convolution")
    onednn_ms = statistics.median(sum(call["ms"] for call in step) for step in steps)
    wall = statistics.median(walls)
    print(
        f"every oneDNN primitive {onednn_ms:.1f} ms; the step {wall:.1f} ms "
        f"(min {min(walls):.1f}); outside oneDNN {wall - onednn_ms:.1f} ms"
    )
    bound = 2 * macs / peak / 1e6
    print(f"bound: the convolutions alone at the peak take {bound:.0f} ms, {bound / wall:.2f} of this step")


if __name__ == "__main__":
    main()
