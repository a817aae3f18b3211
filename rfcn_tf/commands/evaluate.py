"""``rfcn-tf evaluate``: a saved model on a dataset → per-class AP table and JSON."""

import os

from rfcn_tf.data.arguments import add_dataset_arguments, batches_from_args, examples_from_args
from rfcn_tf.evaluation.metrics import METRICS


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help="a .keras file or a SavedModel directory (rfcn-tf export)")
    add_dataset_arguments(parser, default_split="test")
    parser.add_argument("--metric", default="voc07", choices=METRICS)
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--output", default=None, help="write the result as JSON here")


def run(args):
    from rfcn_tf.evaluation import evaluate_model, format_table, save_json
    from rfcn_tf.loading import load_detector

    detector, model_class_names = load_detector(args.model)
    examples, class_names = examples_from_args(args, args.split)
    if model_class_names and list(model_class_names) != list(class_names):
        raise ValueError(f"the model's classes {list(model_class_names)} differ from the "
                         f"dataset's {list(class_names)}")
    # Batches at the model's own scale (its resize is then the identity), boxes in yxyx
    # (a loaded detector's format).
    config = detector.config.replace(bounding_box_format="yxyx")
    if args.min_side is not None:
        config = config.replace(min_side=tuple(args.min_side))
    if args.max_side is not None:
        config = config.replace(max_side=args.max_side)
    dataset = batches_from_args(args, examples, config)
    result = evaluate_model(detector, dataset, metric=args.metric, class_names=class_names,
                            iou_threshold=args.iou_threshold, original_scale=True, verbose=1)
    print(format_table(result))
    if args.output:
        save_json(result, args.output)
        print(f"wrote {os.path.abspath(args.output)}")
    return None  # main() turns the return value into the exit status
