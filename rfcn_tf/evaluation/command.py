"""``rfcn-tf evaluate``: a saved model on a dataset → per-class AP table and JSON."""

import os

from rfcn_tf.evaluation.model_evaluation import evaluate_model
from rfcn_tf.evaluation.report import format_table, save_json


def add_arguments(parser):
    from rfcn_tf.data.arguments import add_dataset_arguments

    parser.add_argument("--model", required=True,
                        help="a .keras file or a SavedModel directory (rfcn-tf export)")
    add_dataset_arguments(parser, default_split="test")
    parser.add_argument("--metric", default="voc07", choices=["voc07", "voc", "coco"])
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--output", default=None, help="write the result as JSON here")


def run(args):
    from rfcn_tf.data.arguments import dataset_from_args
    from rfcn_tf.export import load_detector

    detector, model_class_names = load_detector(args.model)
    dataset, class_names = dataset_from_args(args, args.split)
    if model_class_names and list(model_class_names) != list(class_names):
        raise ValueError(f"the model's classes {list(model_class_names)} differ from the "
                         f"dataset's {list(class_names)}")
    result = evaluate_model(detector, dataset, metric=args.metric, class_names=class_names,
                            iou_threshold=args.iou_threshold, original_scale=True, verbose=1)
    print(format_table(result))
    if args.output:
        save_json(result, args.output)
        print(f"wrote {os.path.abspath(args.output)}")
    return None  # main() turns the return value into the exit status
