"""Second-stage head speed: R-FCN vs Faster R-CNN on the same conv4 map, in ms.

The paper's claim (DESIGN.md §5): R-FCN's per-RoI work is tiny (PSRoIPool + a vote), so
its head barely grows with the RoI count, while Faster R-CNN runs conv5 on every RoI.

Both heads come from ``rfcn_tf.RFCN(num_classes=20, backbone=..., head=..., weights None)``
and read one conv4 map of a 600×1000 image (1×38×63×1024 for ResNet-101); random
plausible RoIs. Timed in a ``tf.function``, warm-up, then the median of the runs:

- per-image part: the model's layers from conv4 to the score maps (R-FCN: dilated conv5 +
  1×1 convs to the score maps; Faster R-CNN: nothing, conv4 is passed on);
- per-RoI part: ``model.roi_head({maps…, "rois"})`` with ``maps`` computed once beforehand
  (R-FCN: PSRoIPool + vote; Faster R-CNN: crop + conv5 per RoI + pool + fc).

Faster R-CNN with ResNet-101 at 2000 RoIs takes tens of seconds a run on a CPU: see
``--max-faster-rois`` and ``--faster-repeats``.

    python benchmarks/bench_heads.py --repeats 5 --faster-repeats 2
    python benchmarks/bench_heads.py --backbone small --repeats 3
"""

import argparse

import numpy as np
import tensorflow as tf
from timing import environment, median_ms, random_rois

import rfcn_tf

BACKBONES = ("resnet101", "resnet50", "small")


def build_head(backbone, head):
    """→ ``(feature_maps(conv4) -> maps, classify(maps, rois), config, conv4 channels)``
    from the model's own layers."""
    model = rfcn_tf.RFCN(num_classes=20, backbone=backbone, head=head)
    if head == "rfcn":
        conv5, reduce = model.conv5, model.get_layer("reduce")
        class_maps, box_maps = model.get_layer("class_maps"), model.get_layer("box_maps")

        def feature_maps(conv4):
            x = reduce(conv5(conv4))
            return {"class_maps": class_maps(x), "box_maps": box_maps(x)}
    else:

        def feature_maps(conv4):
            return {"conv4": conv4}

    def classify(maps, rois):
        return model.roi_head({**maps, "rois": rois})

    return feature_maps, classify, model.config, int(model.trunk.output.shape[-1])


def _ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet101", choices=BACKBONES)
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[600, 1000],
        metavar=("H", "W"),
        help="image size the conv4 map and the RoIs stand for",
    )
    parser.add_argument("--rois", type=int, nargs="+", default=[300, 1000, 2000])
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed runs (median) for R-FCN and the per-image parts"
    )
    parser.add_argument(
        "--faster-repeats", type=int, default=3, help="timed runs (median) for Faster R-CNN's per-RoI part"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before R-FCN's")
    parser.add_argument(
        "--faster-warmup",
        type=int,
        default=1,
        help="untimed runs before Faster R-CNN's (the first one traces)",
    )
    parser.add_argument(
        "--max-faster-rois",
        type=int,
        default=None,
        help="skip Faster R-CNN above this many RoIs (default: none skipped)",
    )
    args = parser.parse_args(argv)
    if min(args.repeats, args.faster_repeats) < 1:
        parser.error("--repeats and --faster-repeats must be >= 1")
    if min(args.warmup, args.faster_warmup) < 0:
        parser.error("--warmup and --faster-warmup must be >= 0")
    if min(args.rois) < 1 or min(args.size) < 16:
        parser.error("--rois must be >= 1 and --size at least 16 16")

    rng = np.random.default_rng(0)
    image_h, image_w = args.size
    rfcn_maps_fn, rfcn_classify, config, channels = build_head(args.backbone, "rfcn")
    faster_maps_fn, faster_classify, _, _ = build_head(args.backbone, "faster_rcnn")
    stride = config.feature_stride
    map_h, map_w = -(-image_h // stride), -(-image_w // stride)
    # Post-ReLU-like activations; dense convs cost the same whatever the values.
    conv4 = tf.constant(np.abs(rng.normal(size=(1, map_h, map_w, channels))), tf.float32)

    print(
        f"Heads  {args.backbone}  image {image_h}x{image_w} -> conv4 1x{map_h}x{map_w}x{channels}  "
        f"k={config.k}  C+1={config.num_classes + 1}  psroi={config.psroi_mode}/"
        f"{config.psroi_samples}  crop=14"
    )
    print(
        f"median of {args.repeats} (R-FCN, per-image) / {args.faster_repeats} (Faster R-CNN "
        f"per-RoI)  {environment()}"
    )

    rfcn_maps_fn, faster_maps_fn = tf.function(rfcn_maps_fn), tf.function(faster_maps_fn)
    rfcn_classify, faster_classify = tf.function(rfcn_classify), tf.function(faster_classify)

    rfcn_maps_ms = median_ms(rfcn_maps_fn, (conv4,), args.repeats, args.warmup)
    faster_maps_ms = median_ms(faster_maps_fn, (conv4,), args.repeats, args.warmup)
    rfcn_maps = rfcn_maps_fn(conv4)
    faster_maps = faster_maps_fn(conv4)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in rfcn_maps.items())
    print(
        f"per-image part (feature_maps): R-FCN {rfcn_maps_ms:.1f} ms ({shapes}); "
        f"Faster R-CNN {faster_maps_ms:.2f} ms (conv4 passed on)"
    )

    print(f"{'RoIs':>5} {'R-FCN ms':>10} {'us/RoI':>8} {'Faster ms':>11} {'us/RoI':>9} {'Faster/R-FCN':>13}")
    per_roi = {}
    for count in args.rois:
        rois = tf.constant(random_rois(rng, count, image_h, image_w))
        rfcn_ms = median_ms(rfcn_classify, (rfcn_maps, rois), args.repeats, args.warmup)
        faster_ms = None
        if args.max_faster_rois is None or count <= args.max_faster_rois:
            faster_ms = median_ms(
                faster_classify, (faster_maps, rois), args.faster_repeats, args.faster_warmup
            )
        per_roi[count] = (rfcn_ms, faster_ms)
        faster_cols = (
            f"{faster_ms:>11.1f} {faster_ms * 1e3 / count:>9.0f}"
            if faster_ms is not None
            else f"{'skipped':>11} {'':>9}"
        )
        print(
            f"{count:>5} {rfcn_ms:>10.2f} {rfcn_ms * 1e3 / count:>8.2f} {faster_cols} "
            f"{_ratio(faster_ms, rfcn_ms):>13}",
            flush=True,
        )

    def total(head, count):
        """feature_maps + classify, or None if not measured."""
        if count not in per_roi:
            return None
        part = per_roi[count][0 if head == "rfcn" else 1]
        return None if part is None else part + (rfcn_maps_ms if head == "rfcn" else faster_maps_ms)

    print("summary (ratios of the medians above):")
    if 300 in per_roi and 2000 in per_roi:
        print(
            f"  R-FCN head at 2000 vs 300 RoIs: per-RoI part x{_ratio(per_roi[2000][0], per_roi[300][0])}, "
            f"total head (feature_maps + classify) x{_ratio(total('rfcn', 2000), total('rfcn', 300))}"
        )
        print(
            f"  Faster R-CNN head at 2000 vs 300 RoIs: total head "
            f"x{_ratio(total('faster', 2000), total('faster', 300))}"
        )
    else:
        print("  (2000 vs 300 RoIs needs both in --rois)")
    if 300 in per_roi:
        print(
            f"  R-FCN total head / Faster R-CNN total head at 300 RoIs: "
            f"{_ratio(total('rfcn', 300), total('faster', 300))} "
            f"(R-FCN {total('rfcn', 300):.1f} ms, Faster R-CNN "
            f"{'n/a' if total('faster', 300) is None else format(total('faster', 300), '.1f')} ms)"
        )


if __name__ == "__main__":
    main()
