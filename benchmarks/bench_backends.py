"""The same R-FCN on every Keras 3 backend, side by side in one run: training step (images/s)
and inference (ms/image) under TensorFlow, JAX and PyTorch.

Each backend runs in a process of its own (Keras picks the backend at import), with the same
random weights (``keras.utils.set_random_seed``), random images with two boxes each, SGD with
momentum; ``--warmup`` untimed steps (JAX compiles its whole step on the first), then
``--steps`` timed ``train_on_batch`` calls and ``--steps`` timed ``predict_on_batch`` calls;
the median of each. ``--rounds N`` repeats every backend N times, interleaved (backend after
backend), for a min–max. Configs: ``small`` (the small backbone, 192×192, batch 4) and any
ResNet (600×1000, batch 1, 20 classes, 300 training RoIs).

    python benchmarks/bench_backends.py --config small --rounds 3
    python benchmarks/bench_backends.py --config resnet50 --steps 3 --warmup 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BACKENDS = ("tensorflow", "jax", "torch")

CASE = r"""
import json, statistics, sys, time
args = json.loads(sys.argv[1])
import keras, numpy as np
from rfcn_tf import RFCN, RFCNConfig

keras.utils.set_random_seed(0)
if args["config"] == "small":
    config = RFCNConfig.small(num_classes=5)
    side, long, batch = 192, 192, 4
else:
    config = RFCNConfig(num_classes=20, backbone=args["config"], backbone_weights=None)
    side, long, batch = 600, 1000, 1
model = RFCN(config=config.replace(min_side=side, max_side=long))
model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (batch, side, long, 3)).astype(np.float32)
boxes = np.tile(np.array([[[20, 30, 120, 150], [60, 90, 180, 180]]], np.float32), (batch, 1, 1))
labels = np.tile(np.array([[1, 2]], np.int32), (batch, 1))
x, y = {"images": images}, {"boxes": boxes, "labels": labels}

def timed(fn):
    for _ in range(args["warmup"]):
        fn()
    times = []
    for _ in range(args["steps"]):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

train = timed(lambda: model.train_on_batch(x, y))
infer = timed(lambda: keras.tree.map_structure(np.asarray, model.predict_on_batch(images)))
print("RESULT " + json.dumps({"train_s": train, "infer_s": infer, "batch": batch}))
"""


def run_case(backend, args):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    case = {"config": args.config, "steps": args.steps, "warmup": args.warmup}
    out = subprocess.run(
        [sys.executable, "-c", CASE, json.dumps(case)], env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{backend} failed:\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="small or a ResNet (resnet50, resnet101)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)

    results = {b: [] for b in args.backends}
    for _ in range(args.rounds):
        for backend in args.backends:
            results[backend].append(run_case(backend, args))

    print(f"{args.config}: {cpu_name()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}")
    print(f"{'backend':<11} {'train img/s':>20} {'infer ms/img':>22} {'train vs TF':>12}")
    reference = None
    for backend, runs in results.items():
        batch = runs[0]["batch"]
        ips = [batch / r["train_s"] for r in runs]
        ms = [r["infer_s"] * 1e3 / batch for r in runs]
        median_ips = statistics.median(ips)
        reference = reference or (median_ips if backend == "tensorflow" else None)
        ratio = f"{median_ips / reference:.2f}×" if reference else "—"
        print(
            f"{backend:<11} {median_ips:>8.2f} ({min(ips):.2f}–{max(ips):.2f})"
            f" {statistics.median(ms):>9.1f} ({min(ms):.1f}–{max(ms):.1f}) {ratio:>12}"
        )


if __name__ == "__main__":
    main()
