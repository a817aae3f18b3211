"""``rfcn-tf predict``: image files → ``detections.json`` and pictures with boxes."""

import os

from rfcn_tf.commands.export import CLASS_NAMES_HELP, parse_class_names
from rfcn_tf.decoding import add_decoding_arguments
from rfcn_tf.predict import RESULTS_FILE, TILED_MAX_PIXELS, predict_files
from rfcn_tf.tiling import add_tiling_arguments, tile_from_args


def add_arguments(parser):
    parser.add_argument(
        "--model",
        required=True,
        help="a .keras file, or an export's directory (rfcn-tf export: SavedModel, TFLite, ONNX)",
    )
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument(
        "--output-dir",
        default="predictions",
        help=f"{RESULTS_FILE} and the pictures go here (default predictions/)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="report detections scoring at least this (default 0.3); below the "
        "model's own threshold (RFCNConfig.score_threshold, 0.05) a .keras "
        "model is rebuilt with it, an export refuses",
    )
    parser.add_argument("--class-names", default=None, help=CLASS_NAMES_HELP)
    parser.add_argument(
        "--batch-size", type=int, default=4, help="images (with --tile: tiles) per model call (default 4)"
    )
    add_decoding_arguments(parser, score_threshold=False)
    tiling = add_tiling_arguments(parser)
    tiling.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse images declaring more pixels (a guard against "
        "decompression bombs; default 2^27, with --tile "
        f"{TILED_MAX_PIXELS} = 2^29)",
    )


def run(args):
    """Returns 1 when some input could not be read (after processing the rest), else None."""
    results = predict_files(
        args.model,
        args.inputs,
        args.output_dir,
        score_threshold=args.score_threshold,
        class_names=parse_class_names(args.class_names),
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
        max_detections=args.max_detections,
        proposals=args.proposals,
        verbose=1,
        **tile_from_args(args),
    )
    failed = [r["file"] for r in results if "error" in r]
    found = sum(len(r.get("detections", [])) for r in results)
    print(
        f"{len(results) - len(failed)} images, {found} detections → "
        f"{os.path.join(args.output_dir, RESULTS_FILE)}"
    )
    if failed:
        print(f"could not read {len(failed)}: {', '.join(failed)}")
        return 1
    return None
