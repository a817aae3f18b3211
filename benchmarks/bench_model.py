"""Whole-model inference vs its convolutions alone, in ms: what does everything after
the convolutions (anchors, proposals + NMS, the per-RoI head, decoding + per-class NMS)
add to a 600×1000 image?

``tf.function``s on one random 600×1000 uint8 image; warm-up, then ``--repeats`` rounds
that run each once in turn (so load changes hit all alike); medians:

- full:  ``model(images, training=False)`` → detections (what ``predict`` runs). A single
  unpadded image takes the batched path of the ``tf.cond`` in ``RFCN.call``;
- conv:  the model's graph up to its convolution outputs (resize, preprocess, the
  ``convolutions`` part: trunk conv1..conv4, RPN convs, R-FCN: dilated conv5 + score-map
  convs), on the same layers;
- after: the rest on those outputs computed once (the graph's ``anchors``, ``proposals``,
  ``roi_head`` and ``detections`` layers), a direct measure of the overhead;
- chained: conv then after in one ``tf.function``, without the ``tf.cond`` (so full −
  chained is what the per-image/batched switch costs, if anything).

The overhead is printed both as (full − conv) / full and as after / full; under load the
subtraction is noisy, the direct figure much less so. Medians, and minima beside them (on
a shared machine the load only adds time, so the minimum is the steadier figure). With
random weights every class scores
about 1/(C+1) ≈ 0.048, under the default 0.05 score threshold, so the decoder's NMS would
see almost nothing; ``--score-threshold`` defaults to 0 here (every box enters per-class
NMS: the worst case for decoding).

    python benchmarks/bench_model.py --repeats 5
    python benchmarks/bench_model.py --backbone small --head rfcn faster_rcnn --repeats 3
"""

import argparse
import statistics

import keras
import numpy as np
import tensorflow as tf
from timing import environment, interleaved_times

import rfcn_tf

BACKBONES = ("resnet101", "resnet50", "small")
HEADS = ("rfcn", "faster_rcnn")


def convolutions(model):
    """The graph up to its convolution outputs (resize, preprocess, the ``convolutions``
    part), on the same layers: images → ``{"resize": (x, sizes, scales)``, the
    convolutions' outputs``}``."""
    front = keras.Model(model.input, model.get_layer("resize").output)
    preprocess = model.get_layer("preprocess")

    def run(inputs):
        resized = front(inputs)
        return {"resize": resized, **model.convolutions(preprocess(resized[0], resized[1]))}

    return run


def after_convolutions(model, conv):
    """Everything after the convolutions (inference), with the graph's own layers."""
    _, sizes, scales = conv["resize"]
    anchors = model.get_layer("anchors")(conv["rpn_logits"])
    proposals, _, valid = model.get_layer("proposals")(conv["rpn_logits"], conv["rpn_deltas"], anchors, sizes)
    maps = {name: conv[name] for name in model.roi_head.input if name != "rois"}
    class_logits, box_deltas = model.roi_head({**maps, "rois": proposals})
    return model.get_layer("detections")(proposals, valid, class_logits, box_deltas, sizes, scales)


def bench(backbone, head, images, repeats, warmup, score_threshold):
    """Run times (ms) of full, conv, after and chained, and the mean detection count."""
    model = rfcn_tf.RFCN(num_classes=20, backbone=backbone, head=head, score_threshold=score_threshold)
    graph = convolutions(model)
    full = tf.function(lambda x: model(x, training=False))
    conv = tf.function(lambda x: graph({"images": x, "image_sizes": None}))
    after = tf.function(lambda c: after_convolutions(model, c))
    chained = tf.function(lambda x: after_convolutions(model, graph({"images": x, "image_sizes": None})))

    conv_out = conv(images)
    times = interleaved_times(
        {
            "full": (full, (images,)),
            "conv": (conv, (images,)),
            "after": (after, (conv_out,)),
            "chained": (chained, (images,)),
        },
        repeats,
        warmup,
    )
    detections = float(tf.reduce_mean(tf.cast(full(images)["num_detections"], tf.float32)))
    return times, detections, model.config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet101", choices=BACKBONES)
    parser.add_argument(
        "--head",
        nargs="+",
        default=["rfcn"],
        choices=HEADS,
        help="one or both heads (both: measured one after the other)",
    )
    parser.add_argument("--size", type=int, nargs=2, default=[600, 1000], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (the first one traces)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.0,
        help="decoder threshold (default 0: every box enters per-class NMS)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("--repeats and --batch must be >= 1, --warmup >= 0")
    if min(args.size) < 16:
        parser.error("--size must be at least 16 16")

    rng = np.random.default_rng(0)
    height, width = args.size
    images = tf.constant(rng.integers(0, 256, size=(args.batch, height, width, 3), dtype=np.uint8))
    print(
        f"Model  {args.backbone}  images {args.batch}x{height}x{width}  median of {args.repeats} "
        f"after {args.warmup} warm-up  score threshold {args.score_threshold}  "
        f"{environment()}"
    )
    print(
        f"{'head':<12} {'stat':<6} {'full ms':>9} {'conv ms':>9} {'after ms':>9} "
        f"{'chained ms':>11} {'(full-conv)/full':>17} {'after/full':>11}"
    )
    results = {}
    for head in args.head:
        times, dets, cfg = bench(args.backbone, head, images, args.repeats, args.warmup, args.score_threshold)
        for stat, reduce in (("median", statistics.median), ("min", min)):
            ms = {name: reduce(t) for name, t in times.items()}
            print(
                f"{head:<12} {stat:<6} {ms['full']:>9.1f} {ms['conv']:>9.1f} {ms['after']:>9.1f} "
                f"{ms['chained']:>11.1f} {100 * (ms['full'] - ms['conv']) / ms['full']:>16.1f}% "
                f"{100 * ms['after'] / ms['full']:>10.1f}%",
                flush=True,
            )
            results.setdefault(stat, {})[head] = ms["full"]
        print(f"{head:<12} {cfg.rpn_post_nms_test} RoIs, {dets:.0f} detections per image", flush=True)
    if len(args.head) == 2:
        ratios = ", ".join(f"{r['rfcn'] / r['faster_rcnn']:.2f} ({stat})" for stat, r in results.items())
        print(f"full model, R-FCN / Faster R-CNN: {ratios}; paper (ResNet-101, K40): 0.17 / 0.42 s = 0.40")


if __name__ == "__main__":
    main()
