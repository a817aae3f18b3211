"""Inference with and without XLA on the convolutions, in ms per batch, side by side.

Two copies of one model (same weights): one compiled plainly, one with
``compile(jit_compile=True)`` (XLA compiles backbone, RPN and score maps; proposals,
PSRoIPool and NMS stay in TensorFlow). Each runs ``model(images, training=False)`` in a
``tf.function`` on random uint8 images; warm-up (XLA compiles on the first call per shape),
then ``--repeats`` rounds that run each once in turn; median and minimum. The detections of
the two are compared too.

    python benchmarks/bench_xla.py --backbone small --size 192 320 --batch 4 --repeats 20
    python benchmarks/bench_xla.py --backbone resnet50 --repeats 5
"""

import argparse
import statistics

import numpy as np
import tensorflow as tf
from timing import environment, interleaved_times

import rfcn_tf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=("resnet101", "resnet50", "small"))
    parser.add_argument("--size", type=int, nargs=2, default=[600, 1000], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    height, width = args.size
    config = (
        rfcn_tf.RFCNConfig.small(num_classes=20)
        if args.backbone == "small"
        else rfcn_tf.RFCNConfig(num_classes=20, backbone=args.backbone)
    )
    config = config.replace(min_side=min(height, width), max_side=max(height, width))
    plain = rfcn_tf.RFCN(config=config)
    xla = rfcn_tf.RFCN(config=config)
    xla.set_weights(plain.get_weights())
    plain.compile(jit_compile=False)
    xla.compile(jit_compile=True)
    images = tf.constant(
        np.random.default_rng(0).integers(0, 256, (args.batch, height, width, 3), dtype=np.uint8)
    )
    calls = {
        "plain": (tf.function(lambda x: plain(x, training=False)), (images,)),
        "xla": (tf.function(lambda x: xla(x, training=False)), (images,)),
    }
    times = interleaved_times(calls, args.repeats, args.warmup)
    a, b = (fn(*call_args) for fn, call_args in calls.values())
    same = bool(
        np.array_equal(a["num_detections"], b["num_detections"]) and np.array_equal(a["labels"], b["labels"])
    )
    gap = float(np.max(np.abs(a["boxes"].numpy() - b["boxes"].numpy())))

    print(
        f"inference {args.backbone} {args.batch}x{height}x{width}, median/min of "
        f"{args.repeats} after {args.warmup}  {environment()}"
    )
    for name, t in times.items():
        print(f"{name:<6} median {statistics.median(t):9.1f} ms   min {min(t):9.1f} ms")
    print(
        f"xla / plain: {statistics.median(times['xla']) / statistics.median(times['plain']):.3f} "
        f"(median), {min(times['xla']) / min(times['plain']):.3f} (min); same detections: "
        f"{same}, largest box difference {gap:.2e} px"
    )


if __name__ == "__main__":
    main()
