"""``rfcn-tf evaluate``: a saved model on a dataset → per-class AP table and JSON."""

import os

from rfcn_tf.data.arguments import (
    add_dataset_arguments,
    batches_from_args,
    examples_from_args,
    scale_from_args,
)
from rfcn_tf.decoding import add_decoding_arguments, count_capped, decoding_args, warn_capped
from rfcn_tf.evaluation.metrics import METRICS
from rfcn_tf.tiling import add_tiling_arguments, tile_from_args


def add_arguments(parser):
    parser.add_argument(
        "--model",
        required=True,
        help="a .keras file, or an export's directory (rfcn-tf export: SavedModel, TFLite, ONNX)",
    )
    add_dataset_arguments(parser, default_split="test")
    parser.add_argument("--metric", default="voc07", choices=METRICS)
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    add_decoding_arguments(parser)
    add_tiling_arguments(parser)


def run(args):
    from rfcn_tf.evaluation import evaluate_model, evaluate_tiled
    from rfcn_tf.loading import load_detector

    tiling, scale = tile_from_args(args), scale_from_args(args)
    if tiling["tile"] is not None and scale:
        raise ValueError(
            "--min-side/--max-side do not apply with --tile: each tile is seen at the model's own scale"
        )
    detector, model_class_names = load_detector(args.model, **decoding_args(args), **scale)
    examples, class_names = examples_from_args(args, args.split)
    if model_class_names and list(model_class_names) != list(class_names):
        raise ValueError(
            f"the model's classes {list(model_class_names)} differ from the dataset's {list(class_names)}"
        )
    if tiling["tile"] is not None:  # each image at its own size, tile by tile
        result = evaluate_tiled(
            detector,
            examples,
            batch_size=args.batch_size,
            metric=args.metric,
            class_names=class_names,
            iou_threshold=args.iou_threshold,
            verbose=1,
            **tiling,
        )
        return _report(result, args.output)
    # Batches at the model's own scale (its resize is then the identity), boxes in yxyx
    # (a loaded detector's format).
    config = detector.config.replace(bounding_box_format="yxyx")
    dataset = batches_from_args(args, examples, config)
    cap, counts = detector.config.max_detections, []

    def detect(inputs):  # the detector, counting the images that reach the cap
        out = detector(inputs)
        counts.append((count_capped(out["num_detections"], cap), len(out["num_detections"])))
        return out

    result = evaluate_model(
        detect,
        dataset,
        metric=args.metric,
        class_names=class_names,
        iou_threshold=args.iou_threshold,
        original_scale=True,
        verbose=1,
        bounding_box_format="yxyx",
    )
    capped = sum(c for c, _ in counts)
    if capped:
        warn_capped(f"{capped} of {sum(n for _, n in counts)} images", cap)
    return _report(result, args.output)


def _report(result, output):
    from rfcn_tf.evaluation import format_table, save_json

    print(format_table(result))
    if output:
        save_json(result, output)
        print(f"wrote {os.path.abspath(output)}")
    return None  # main() turns the return value into the exit status
