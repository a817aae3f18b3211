"""Training throughput on this CPU: images/s of ``model.fit`` steps, one device against
``MirroredStrategy`` over N logical CPU devices, and R-FCN against Faster R-CNN at 300 and
2000 training RoIs (the paper's OHEM claim: R-FCN 0.45 → 0.46 s/img, Faster R-CNN 1.5 → 2.9).

Each case runs in its own process (logical devices must be made before TensorFlow starts):
random weights, random images with two boxes each, ``--warmup`` steps then ``--steps`` timed
steps; the median step time. ``--xla on`` compiles the convolutions with XLA
(``compile(jit_compile=True)``; the rest of the step stays in TensorFlow).
``--determinism off on`` times the step with and without
``tf.config.experimental.enable_op_determinism()`` (what ``rfcn-tf train`` does by default);
``--rounds N`` repeats every case N times, interleaved, for a min–max.

    python benchmarks/bench_training.py --config small --steps 20
    python benchmarks/bench_training.py --config resnet101 --steps 3 --warmup 1 --replicas 1
    python benchmarks/bench_training.py --config small --heads rfcn faster_rcnn --rois 300 2000 --replicas 1
    python benchmarks/bench_training.py --config small --xla off on --replicas 1
    python benchmarks/bench_training.py --config small --determinism off on --replicas 1 --rounds 3
"""

import argparse
import json
import os
import subprocess
import sys

CASE = r"""
import json, os, statistics, sys, time
args = json.loads(sys.argv[1])
import tensorflow as tf
if args["determinism"]:
    tf.config.experimental.enable_op_determinism()
from rfcn_tf.distribution import make_strategy
strategy = make_strategy("mirrored" if args["replicas"] > 1 else "none",
                         args["replicas"] if args["replicas"] > 1 else None)
import keras, numpy as np
from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.config import SMALL_TRAIN_STRIDE

if args["config"] == "small":
    config = RFCNConfig.small(num_classes=5, feature_stride=SMALL_TRAIN_STRIDE)
    side, long, batch = 192, 192, 4
else:
    config = RFCNConfig(num_classes=20, backbone=args["config"])
    side, long, batch = 600, 1000, 1
config = config.replace(head=args["head"], rpn_post_nms_train=args["rois"],
                        rpn_pre_nms_train=max(config.rpn_pre_nms_train, args["rois"]))
batch *= args["replicas"]
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (batch, side, long, 3)).astype(np.float32)
boxes = np.tile(np.array([[[20, 30, 120, 150], [60, 90, 180, 180]]], np.float32), (batch, 1, 1))
labels = np.tile(np.array([[1, 2]], np.int32), (batch, 1))
data = tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "labels": labels}))
data = data.batch(batch).repeat()
with strategy.scope():
    model = RFCN(config=config.replace(min_side=side, max_side=long))
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=args["xla"])

class Timer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        times.append(time.perf_counter() - self.start)

times = []
model.fit(data, steps_per_epoch=args["warmup"] + args["steps"], epochs=1, verbose=0,
          callbacks=[Timer()])
step = statistics.median(times[args["warmup"]:])
print(json.dumps({"step_s": step, "images": batch, "images_per_s": batch / step}))
"""


def run_case(case):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", CASE, json.dumps(case)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=("small", "resnet50", "resnet101"))
    parser.add_argument("--heads", nargs="+", default=["rfcn"], choices=("rfcn", "faster_rcnn"))
    parser.add_argument(
        "--rois", type=int, nargs="+", default=[300], help="training proposals per image (rpn_post_nms_train)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2],
        help="1 = one device; N > 1 = MirroredStrategy on N logical CPU devices",
    )
    parser.add_argument(
        "--xla",
        nargs="+",
        default=["off"],
        choices=("off", "on"),
        help="XLA on the convolutions (compile(jit_compile=True)): off, on or both",
    )
    parser.add_argument(
        "--determinism",
        nargs="+",
        default=["off"],
        choices=("off", "on"),
        help="tf.config.experimental.enable_op_determinism(): off, on or both",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every case this many times, interleaved (min–max)"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    print(
        f"training throughput, {args.config}, median of {args.steps} steps after "
        f"{args.warmup}; CPUs: {os.cpu_count()}; load avg: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'head':<12} {'RoIs':>5} {'replicas':>8} {'XLA':>4} {'det':>4} {'batch':>6} "
        f"{'s/step':>8} {'s/image':>8} {'images/s':>9}"
    )
    cases = [
        {
            "config": args.config,
            "head": head,
            "rois": rois,
            "replicas": replicas,
            "xla": xla == "on",
            "determinism": det == "on",
            "steps": args.steps,
            "warmup": args.warmup,
        }
        for head in args.heads
        for rois in args.rois
        for replicas in args.replicas
        for xla in args.xla
        for det in args.determinism
    ]
    steps = {i: [] for i in range(len(cases))}
    for _ in range(args.rounds):
        for i, case in enumerate(cases):
            r = run_case(case)
            steps[i].append(r["step_s"])
            print(
                f"{case['head']:<12} {case['rois']:>5} {case['replicas']:>8} "
                f"{'on' if case['xla'] else 'off':>4} {'on' if case['determinism'] else 'off':>4} "
                f"{r['images']:>6} {r['step_s']:>8.3f} {r['step_s'] / r['images']:>8.3f} "
                f"{r['images_per_s']:>9.2f}",
                flush=True,
            )
    if args.rounds > 1:
        print("min–max s/step over the rounds:")
        for i, case in enumerate(cases):
            print(
                f"  {case['head']} rois={case['rois']} replicas={case['replicas']} "
                f"xla={case['xla']} determinism={case['determinism']}: "
                f"{min(steps[i]):.3f}–{max(steps[i]):.3f}"
            )


if __name__ == "__main__":
    main()
