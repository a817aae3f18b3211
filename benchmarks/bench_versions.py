"""Another rfcn_tf checkout against this one, side by side: whole-model inference at
600×1000 (``tf.function`` of ``model(x)``, 3 runs after a warm-up), a small-model training
step (batch 4 at 192 px, stride 8, AdamW, 30 steps after 5) and a ResNet-50 one
(``train_step_resnet50``: one 600×1000 image, five boxes, SGD, every layer and BatchNorm
training, 3 steps after 2), in ms.

Each version runs in its own Python process (imported from its own folder), the two
alternating ``--rounds`` times, so that a change in the machine's load hits both alike.
The other checkout: ``git worktree add /tmp/rfcn_old <revision>``.

    python benchmarks/bench_versions.py --old /tmp/rfcn_old --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("train_step", "train_step_resnet50", "resnet50", "resnet101")
CHILD = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[1])
import keras, numpy as np, tensorflow as tf
import rfcn_tf

case, rng = sys.argv[2], np.random.default_rng(0)
times = []
if case == "train_step":
    model = rfcn_tf.RFCN(config=rfcn_tf.RFCNConfig.small(num_classes=5, feature_stride=8))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    x = rng.uniform(0, 255, (4, 192, 192, 3)).astype(np.float32)
    y = {"boxes": np.tile(np.array([[[20, 20, 80, 90], [100, 110, 150, 170]]], np.float32), (4, 1, 1)),
         "labels": np.tile(np.array([[1, 3]], np.int32), (4, 1))}
    for i in range(35):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= 5:
            times.append(1e3 * (time.perf_counter() - start))
elif case == "train_step_resnet50":
    model = rfcn_tf.RFCN(num_classes=20, backbone="resnet50")
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    x = tf.constant(rng.integers(0, 256, (1, 600, 1000, 3), dtype=np.uint8))
    y = {"boxes": np.array([[[60, 80, 300, 400], [200, 500, 450, 900], [10, 10, 120, 200],
                             [300, 100, 580, 350], [100, 600, 250, 980]]], np.float32),
         "labels": np.array([[1, 5, 9, 13, 17]], np.int32)}
    for i in range(5):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= 2:
            times.append(1e3 * (time.perf_counter() - start))
else:
    model = rfcn_tf.RFCN(num_classes=20, backbone=case)
    x = tf.constant(rng.integers(0, 256, (1, 600, 1000, 3), dtype=np.uint8))
    run = tf.function(lambda x: model(x, training=False))
    for i in range(4):
        start = time.perf_counter()
        run(x)["num_detections"].numpy()
        if i >= 1:
            times.append(1e3 * (time.perf_counter() - start))
print("RESULT " + json.dumps({"ms": times, "file": rfcn_tf.__file__}))
"""


def run(path, case):
    done = subprocess.run([sys.executable, "-c", CHILD, path, case], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{path} {case} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[0][len("RESULT ") :])
    if not result["file"].startswith(os.path.abspath(path)):
        raise SystemExit(f"{path}: imported rfcn_tf from {result['file']} instead")
    return result["ms"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the other checkout's folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = parser.parse_args(argv)
    versions = {"old": os.path.abspath(args.old), "new": HERE}
    for case in args.cases:
        times = {name: [] for name in versions}
        for _ in range(args.rounds):
            for name, path in versions.items():
                times[name] += run(path, case)
        median = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"{case}: old median {median['old']:.1f} ms (min {min(times['old']):.1f}), "
            f"new median {median['new']:.1f} ms (min {min(times['new']):.1f}); "
            f"new/old {median['new'] / median['old']:.3f} ({len(times['new'])} runs each)",
            flush=True,
        )


if __name__ == "__main__":
    main()
