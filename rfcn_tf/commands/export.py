"""``rfcn-tf export``: a ``.keras`` model → a versioned SavedModel (TF Serving), TFLite or
ONNX export."""

import os

from rfcn_tf.decoding import add_decoding_arguments, decoding_args, with_decoding
from rfcn_tf.export.files import DEFAULT_DIRS, FORMATS, ONNX_OPSET, PADDED_SIGNATURE, QUANTIZATIONS
from rfcn_tf.loading import load_model
from rfcn_tf.progress import Progress

CLASS_NAMES_HELP = "comma-separated names or a file with one per line (default: the model's)"


def parse_class_names(value):
    """``--class-names``: comma-separated names, or a text file with one name per line."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [n.strip() for n in value.split(",")]


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="the trained model, a .keras file")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="saved_model",
        help="saved_model (TF Serving; any image size), tflite (TFLite built-in "
        "ops only) or onnx; the last two take one image of --input-size",
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="versions go to EXPORT_DIR/VERSION (default "
        + ", ".join(f"{d} for {f}" for f, d in DEFAULT_DIRS.items())
        + ")",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="version number (default: one more than the highest present, or 1)",
    )
    parser.add_argument("--class-names", default=None, help=CLASS_NAMES_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        default=None,
        help="tflite/onnx: the fixed image size the export takes (the model "
        "resizes it to its own scale inside; default: the model's scale, "
        "MIN_SIDE MAX_SIDE)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="tflite: store weights as float16, or as int8 with activations "
        "quantised on the fly (dynamic_int8); default none (float32)",
    )
    parser.add_argument(
        "--opset", type=int, default=ONNX_OPSET, help=f"onnx: the ONNX opset (default {ONNX_OPSET})"
    )
    add_decoding_arguments(parser)


def run(args):
    from rfcn_tf.export import export_onnx, export_saved_model, export_tflite

    fmt = args.format
    if fmt != "tflite" and args.quantize != "none":
        raise ValueError(f"--quantize applies to --format tflite, not {fmt}")
    if fmt == "saved_model" and args.input_size is not None:
        raise ValueError("--input-size applies to tflite and onnx; a SavedModel takes any size")
    if fmt != "onnx" and args.opset != ONNX_OPSET:
        raise ValueError(f"--opset applies to --format onnx, not {fmt}")
    common = dict(
        version=args.version, class_names=parse_class_names(args.class_names), overwrite=args.overwrite
    )
    export_dir = args.export_dir or DEFAULT_DIRS[fmt]
    # Two stages: loading the model, then converting and writing it (no items to count).
    progress = Progress(2, "export", "stages", every=1)
    model = with_decoding(load_model(args.model), **decoding_args(args))  # the export carries them
    progress.update(1)
    if fmt == "saved_model":
        path = export_saved_model(model, export_dir, **common)
        wrote = f"{path} (signatures serving_default, serving_bytes, {PADDED_SIGNATURE})"
    elif fmt == "tflite":
        path = export_tflite(
            model, export_dir, input_size=args.input_size, quantization=args.quantize, **common
        )
        wrote = f"{path}/model.tflite (TFLite built-in ops; input images [1, H, W, 3] float32 RGB 0..255)"
    else:
        path = export_onnx(model, export_dir, input_size=args.input_size, opset=args.opset, **common)
        wrote = f"{path}/model.onnx (opset {args.opset}; input images [1, H, W, 3] float32 RGB 0..255)"
    progress.update(2)
    progress.finish()
    print(f"wrote {wrote}")
    return None
