"""rfcn_tf against torchvision, side by side in one run: whole-model inference and PSRoIPool.

- detector: R-FCN ResNet-50 (this package) vs torchvision ``fasterrcnn_resnet50_fpn`` on the
  same random 600×1000 uint8 image, random weights, both at 600/1000 scale, 300 proposals
  after the RPN's NMS, score threshold 0.05, at most 100 detections. torchvision runs
  ``model.eval()`` under ``torch.inference_mode()``; rfcn_tf twice: ``detector`` is the
  graph ``model.predict`` runs (a ``tf.function`` of ``model(x, training=False)``, weights
  read from variables), ``detector_frozen`` is ``rfcn_tf.freeze_for_inference(model)`` (what the SavedModel
  export serves), each in a run of its own: TF's oneDNN primitive cache is keyed by the
  convolution's shapes, so the graph that runs first sets the filter layout for both (the
  variable graph first: the frozen head 1.6× slower; the frozen graph first: the variable
  graph faster than it is alone). rfcn_tf's BatchNorm statistics and conv biases are made trained-like
  (``timing.trained_like``); torchvision's detection models run BatchNorm as a frozen affine
  layer, whose cost does not depend on its values.
- train_step: one SGD step (learning rate 1e-3, momentum 0.9) on the same image and five
  boxes: rfcn_tf's ``train_on_batch`` (its recipe: RoIs from 300 proposals, OHEM over all
  of them) against torchvision's training mode with ``rpn_post_nms_top_n_train=300`` and
  ``box_batch_size_per_image=300`` (every proposal through the box head). Neither starts
  from pretrained weights, so both train their BatchNorms. ``train_step_bf16``: the same
  with bfloat16 activations, rfcn_tf's ``mixed_bfloat16`` policy against torch's
  ``torch.autocast("cpu", torch.bfloat16)`` (oneDNN's bfloat16 kernels on a CPU with
  AVX512_BF16 or AMX). ``train_step_finetune``: the paper's fine-tuning recipe on both
  sides, as from pretrained weights (the weights stay random; only what trains changes):
  every BatchNorm frozen (an affine layer: rfcn_tf's ``freeze_batchnorm``, torchvision's
  ``FrozenBatchNorm2d``) and conv1 + the first stage frozen (``freeze_stem``, torchvision's
  ``trainable_layers=3``), float32.
- psroi: ``PSRoIPool(mode="align", samples_per_bin=2)`` forward + backward vs torchvision's C++
  ``ps_roi_align(..., sampling_ratio=2)`` forward + backward: maps 1×38×63×1029 (k = 7, 21
  classes), 300 random RoIs, the same weights on the output. Each round a side runs
  ``--psroi-calls`` times in a row and its median counts (the maps stay in cache, as in a
  kernel microbenchmark; alternating single calls measures how each copes with the other's
  cache traffic instead).
- ``--macs``: torchvision's multiply-adds as torch's ``FlopCounterMode`` counts them, for its
  inference and its float32 training step (forward, forward + backward), to set beside
  rfcn_tf's convolutions (``bench_flops.py``, ``bench_train_stages.py``).

torch is not a dependency of rfcn_tf: the torchvision side runs in a worker process of a
Python that has torch and torchvision (``--torch-python``, default: this Python if it imports
torch, else ``$RFCN_TORCH_PYTHON``); without one only the rfcn_tf side runs. Both sides use
``--threads`` threads (TF's intra-op pool, ``torch.set_num_threads``) and TF one inter-op
thread by default (TF's default, one per core, runs independent convolutions at once, each
with all the intra-op threads, which oversubscribes 2 cores: measured 660 → 610 ms frozen).
Each round runs rfcn_tf, then torchvision, so a change in the machine's load hits both; the
ratio is taken per round and printed as median and min–max beside the times.

    python benchmarks/bench_torchvision.py --torch-python /path/to/torch-venv/bin/python
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HEIGHT, WIDTH = 600, 1000
STRIDE, K, CLASSES, ROIS, SAMPLES = 16, 7, 21, 300, 2
LEARNING_RATE, MOMENTUM = 1e-3, 0.9
MAP_SHAPE = (1, -(-HEIGHT // STRIDE), -(-WIDTH // STRIDE), K * K * CLASSES)


def inputs():
    """The image, score maps, RoIs (``timing.random_rois``'s rule, here in numpy alone: the
    worker's Python may have no TensorFlow) and output weights both sides use (seeded)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    maps = rng.normal(size=MAP_SHAPE).astype(np.float32)
    sides = np.exp(rng.uniform(np.log(16), np.log(600), size=(ROIS, 2)))
    centres = rng.uniform(0, 1, size=(ROIS, 2)) * [HEIGHT, WIDTH]
    lo = np.clip(centres - sides / 2, 0, [HEIGHT, WIDTH])
    hi = np.clip(centres + sides / 2, 0, [HEIGHT, WIDTH])
    rois = np.concatenate([lo, hi], -1).astype(np.float32)  # [R, 4] yxyx
    weights = rng.normal(size=(ROIS, K, K, CLASSES)).astype(np.float32)
    return image, maps, rois, weights


def ground_truth():
    """Five boxes (yxyx pixels, 60–300 px sides) and their labels 1..CLASSES-1 (seeded)."""
    rng = np.random.default_rng(1)
    sides = rng.uniform(60, 300, (5, 2))
    lo = rng.uniform(0, 1, (5, 2)) * ([HEIGHT, WIDTH] - sides)
    boxes = np.concatenate([lo, lo + sides], -1).astype(np.float32)
    return boxes, rng.integers(1, CLASSES, 5).astype(np.int64)


def lazy(make, *args):
    """A case built on its first call (each training case builds a ResNet-50 of its own)."""
    built = []

    def run():
        if not built:
            built.append(make(*args))
        return built[0]()

    return run


# ---------------------------------------------------------------- torchvision worker
def torch_cases(threads):
    import torch
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d, ps_roi_align

    torch.set_num_threads(threads)
    # TensorFlow's CPU threads flush denormals to zero; torch's do not by default. Random
    # weights under frozen BatchNorms (train_step_finetune) push activations into denormals,
    # which made that step 3.6–6.9 s instead of 3.7 s. The same arithmetic on both sides:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    image, maps, rois, weights = inputs()

    def faster_rcnn(finetune=False, **options):  # random weights, our classes and scale
        # fasterrcnn_resnet50_fpn's own build: without weights BatchNorms train and every
        # stage trains; from pretrained weights (finetune) BatchNorms are frozen and conv1 +
        # layer1 too (trainable_layers=3)
        backbone = resnet_fpn_backbone(
            backbone_name="resnet50",
            weights=None,
            norm_layer=FrozenBatchNorm2d if finetune else torch.nn.BatchNorm2d,
            trainable_layers=3 if finetune else 5,
        )
        return FasterRCNN(backbone, num_classes=CLASSES, min_size=HEIGHT, max_size=WIDTH, **options)

    detector = faster_rcnn(
        rpn_post_nms_top_n_test=ROIS, box_score_thresh=0.05, box_detections_per_img=100
    ).eval()
    picture = torch.from_numpy(image[0]).permute(2, 0, 1).float() / 255.0

    def detect():
        with torch.inference_mode():
            return int(detector([picture])[0]["boxes"].shape[0])

    # torchvision: NCHW maps, class-major channels (the layout does not change the cost).
    tmaps = torch.from_numpy(maps).permute(0, 3, 1, 2).contiguous()
    boxes = torch.from_numpy(np.concatenate([np.zeros((ROIS, 1), np.float32), rois[:, [1, 0, 3, 2]]], 1))
    tweights = torch.from_numpy(weights).permute(0, 3, 1, 2).contiguous()

    # Training: the same image and boxes, ROIS proposals after the RPN's NMS, all of them
    # through the box head (R-FCN's OHEM runs its per-RoI step on every proposal), SGD.
    gt_boxes, gt_labels = ground_truth()
    target = {
        "boxes": torch.from_numpy(gt_boxes[:, [1, 0, 3, 2]].copy()),
        "labels": torch.from_numpy(gt_labels),
    }

    def trainer(dtype, finetune=False):
        """One SGD step; the forward under CPU autocast to ``dtype`` unless float32."""
        torch.manual_seed(0)
        trainee = faster_rcnn(finetune, rpn_post_nms_top_n_train=ROIS, box_batch_size_per_image=ROIS).train()
        parameters = [p for p in trainee.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE, momentum=MOMENTUM)

        def step():
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                losses = trainee([picture], [target])
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            return float(total.detach())

        return step

    def psroi():
        leaf = tmaps.clone().requires_grad_(True)
        out = ps_roi_align(leaf, boxes, K, spatial_scale=1.0 / STRIDE, sampling_ratio=SAMPLES)
        (out * tweights).sum().backward()
        return int(leaf.grad.shape[1])

    def macs():
        """torchvision's multiply-adds as torch's FlopCounterMode counts them (2 FLOPs each):
        inference, and the float32 training step's forward and forward + backward."""
        from torch.utils.flop_counter import FlopCounterMode

        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            detector([picture])
        counts = {"inference": counter.get_total_flops() / 2}
        torch.manual_seed(0)
        trainee = faster_rcnn(rpn_post_nms_top_n_train=ROIS, box_batch_size_per_image=ROIS).train()
        with FlopCounterMode(display=False) as counter:
            sum(trainee([picture], [target]).values())
        counts["training forward"] = counter.get_total_flops() / 2
        with FlopCounterMode(display=False) as counter:
            sum(trainee([picture], [target]).values()).backward()
        counts["training forward + backward"] = counter.get_total_flops() / 2
        return counts

    return {
        "macs": macs,
        "detector": detect,
        "psroi": psroi,
        "train_step": lazy(trainer, torch.float32),
        "train_step_bf16": lazy(trainer, torch.bfloat16),
        "train_step_finetune": lazy(trainer, torch.float32, True),
    }, f"torch {torch.__version__} torchvision {torchvision.__version__}"


def worker(threads):
    cases, version = torch_cases(threads)
    print(json.dumps({"version": version}), flush=True)
    for line in sys.stdin:
        name, calls = line.split()
        times = []
        for _ in range(int(calls)):
            start = time.perf_counter()
            result = cases[name]()
            times.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"ms": times, "result": result}), flush=True)


class TorchSide:
    """The worker process: ``run(name)`` → ms."""

    def __init__(self, python, threads):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker", "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.version = self._read()["version"]

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the torchvision worker exited (code {self.process.wait()})")
        return json.loads(line)

    def run(self, name, calls):
        """``calls`` runs of case ``name`` → their times, ms."""
        self.process.stdin.write(f"{name} {calls}\n")
        self.process.stdin.flush()
        return self._read()["ms"]

    def result(self, name):
        """One run of case ``name`` → what it returned."""
        self.process.stdin.write(f"{name} 1\n")
        self.process.stdin.flush()
        return self._read()["result"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def find_torch_python(given):
    if given:
        return given
    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchvision"):
        return sys.executable
    return os.environ.get("RFCN_TORCH_PYTHON")


# ---------------------------------------------------------------- rfcn_tf side
def tf_cases(threads, inter_op, backbone):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    from timing import pooled_gradient, trained_like

    import rfcn_tf
    from rfcn_tf.layers.psroi_pool import PSRoIPool

    image, maps, rois, weights = inputs()
    model = trained_like(rfcn_tf.RFCN(num_classes=CLASSES - 1, backbone=backbone, rpn_post_nms_test=ROIS))
    full = tf.function(lambda x: model(x, training=False))
    frozen = rfcn_tf.freeze_for_inference(model)
    image = tf.constant(image)
    pixels = tf.cast(image, tf.float32)

    def detect():
        return int(full(image)["num_detections"][0])

    def detect_frozen():
        return int(frozen.detect(pixels)["num_detections"][0])

    layer = PSRoIPool(k=K, spatial_scale=1.0 / STRIDE, samples_per_bin=SAMPLES, mode="align")
    tmaps, trois, tweights = tf.constant(maps), tf.constant(rois[None]), tf.constant(weights[None])

    pool_grad = pooled_gradient(layer, tweights)

    def psroi():
        return int(pool_grad(tmaps, trois).shape[-1])

    import keras

    gt_boxes, gt_labels = ground_truth()
    y = {"boxes": gt_boxes[None], "labels": gt_labels[None].astype(np.int32)}

    def trainer(policy, finetune=False):
        """One SGD step of ``train_on_batch``, the model built under ``policy``."""
        keras.mixed_precision.set_global_policy(policy)
        try:
            trainee = rfcn_tf.RFCN(
                num_classes=CLASSES - 1,
                backbone=backbone,
                rpn_post_nms_train=ROIS,
                freeze_batchnorm=finetune,
                freeze_stem=finetune,
            )
        finally:
            keras.mixed_precision.set_global_policy("float32")
        trainee.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM))
        return lambda: trainee.train_on_batch(image, y)

    cases = {
        "detector": detect,
        "detector_frozen": detect_frozen,
        "psroi": psroi,
        "train_step": lazy(trainer, "float32"),
        "train_step_bf16": lazy(trainer, "mixed_bfloat16"),
        "train_step_finetune": lazy(trainer, "float32", True),
    }
    return cases, f"TF {tf.__version__}"


# rfcn_tf case → the torchvision case it is compared with
AGAINST = {
    "detector": "detector",
    "detector_frozen": "detector",
    "psroi": "psroi",
    "train_step": "train_step",
    "train_step_bf16": "train_step_bf16",
    "train_step_finetune": "train_step_finetune",
}


def times(fn, calls):
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["detector_frozen", "psroi"],
        choices=list(AGAINST),
        help="detector and detector_frozen need a run each (module doc)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="rounds (detector)")
    parser.add_argument("--psroi-repeats", type=int, default=10, help="rounds (psroi)")
    parser.add_argument(
        "--psroi-calls",
        type=int,
        default=5,
        help="calls a side makes in a row each psroi round (their median)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="TF intra-op / torch threads")
    parser.add_argument(
        "--inter-op", type=int, default=1, help="TF inter-op threads (1: one op at a time, as torch runs)"
    )
    parser.add_argument("--backbone", default="resnet50", help="rfcn_tf's backbone")
    parser.add_argument("--torch-python", help="a Python with torch and torchvision")
    parser.add_argument(
        "--macs",
        action="store_true",
        help="also print torchvision's multiply-adds (torch's FlopCounterMode); rfcn_tf's "
        "convolutions: bench_flops.py, bench_train_stages.py",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.threads)
    if {"detector", "detector_frozen"} <= set(args.cases):
        parser.error(
            "time detector and detector_frozen in separate runs: oneDNN's primitive "
            "cache keeps the weight layout of whichever ran first for both"
        )

    python = find_torch_python(args.torch_python)
    torch_side = TorchSide(python, args.threads) if python else None
    ours, tf_version = tf_cases(args.threads, args.inter_op, args.backbone)
    print(
        f"rfcn_tf ({tf_version}, {args.backbone}, {args.threads} intra-op / {args.inter_op} "
        f"inter-op threads) vs "
        f"{torch_side.version if torch_side else 'no torchvision (pass --torch-python)'} "
        f"({args.threads} threads); load avg {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{'case':<16} {'rounds':>6} {'rfcn_tf ms':>20} {'torchvision ms':>20} "
        f"{'ratio median':>12} {'min-max':>13}"
    )
    for name in args.cases:
        psroi = name == "psroi"
        rounds = args.psroi_repeats if psroi else args.repeats
        calls = args.psroi_calls if psroi else 1
        mine, theirs = [], []
        for i in range(args.warmup + rounds):
            a = statistics.median(times(ours[name], calls))
            b = statistics.median(torch_side.run(AGAINST[name], calls)) if torch_side else float("nan")
            if i >= args.warmup:
                mine.append(a)
                theirs.append(b)
        ratios = [a / b for a, b in zip(mine, theirs)]
        print(
            f"{name:<16} {rounds:>6} {statistics.median(mine):>9.1f} (min {min(mine):>6.1f}) "
            f"{statistics.median(theirs):>9.1f} (min {min(theirs):>6.1f}) "
            f"{statistics.median(ratios):>12.3f} {min(ratios):>6.3f}-{max(ratios):.3f}",
            flush=True,
        )
    if args.macs and torch_side:
        counts = torch_side.result("macs")
        print("torchvision multiply-adds: " + ", ".join(f"{k} {v / 1e9:.1f} G" for k, v in counts.items()))
    if torch_side:
        torch_side.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
