"""Run the speed benchmarks (PSRoIPool, heads, whole model, image scale, XLA, FLOPs, the
training step's stages and its oneDNN primitives, against torchvision: set
``RFCN_TORCH_PYTHON`` to a Python with torch) one after the other and print their outputs.

Each runs in its own Python process (``sys.executable``), so one's memory and TF state do
not weigh on the next. Default: the paper's ResNet-101 at 600×1000 with modest repeats
(several minutes on a 2-core CPU: Faster R-CNN's per-RoI conv5 dominates). ``--quick``: the
small backbone and few repeats, a smoke run of a minute or two.

    python benchmarks/run_all.py --quick
    python benchmarks/run_all.py [--only heads model]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = {
    "psroi_pool": ["--repeats", "10"],
    "heads": ["--backbone", "resnet101", "--repeats", "5", "--faster-repeats", "1"],
    "model": ["--backbone", "resnet101", "--head", "rfcn", "faster_rcnn", "--repeats", "3"],
    "scale": ["--repeats", "5"],
    "xla": ["--backbone", "resnet101", "--repeats", "3"],
    "flops": ["--backbone", "resnet101", "--repeats", "3"],
    "train_stages": ["--backbone", "resnet50", "--repeats", "3"],
    "primitives": ["--recipe", "finetune", "--repeats", "3"],
    "torchvision": ["--repeats", "5"],  # the rfcn_tf side only, unless torch is importable
}
QUICK = {
    "psroi_pool": ["--repeats", "3", "--rois", "300", "2000", "--modes", "align"],
    "heads": ["--backbone", "small", "--repeats", "3", "--warmup", "1", "--faster-repeats", "1"],
    "model": ["--backbone", "small", "--head", "rfcn", "faster_rcnn", "--repeats", "3"],
    "scale": ["--repeats", "2"],
    "xla": ["--backbone", "small", "--size", "192", "320", "--batch", "4", "--repeats", "3"],
    "flops": ["--backbone", "resnet50", "--repeats", "1", "--matmul", "1024"],
    "train_stages": ["--small", "--size", "192", "192", "--repeats", "2"],
    "torchvision": ["--repeats", "1", "--warmup", "1", "--psroi-repeats", "2"],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small backbone, few repeats: a fast smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=list(FULL), default=list(FULL), help="run only these benchmarks"
    )
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ info/warning lines drown the tables
    failed = []
    start_all = time.perf_counter()
    for name in args.only:
        command = [sys.executable, os.path.join(HERE, f"bench_{name}.py"), *plan[name]]
        print(f"==== {name}: {' '.join(['python', os.path.relpath(command[1]), *plan[name]])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, env=env, check=False).returncode
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"==== {name}: {status} in {time.perf_counter() - start:.0f} s\n", flush=True)
        if code:
            failed.append(name)
    print(
        f"all done in {time.perf_counter() - start_all:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
