"""``rfcn-tf export``: a ``.keras`` model → a versioned SavedModel for TF Serving."""

import os

from rfcn_tf.export import export_saved_model
from rfcn_tf.signatures import PADDED_SIGNATURE

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
    parser.add_argument("--export-dir", default="saved_models/rfcn",
                        help="versions go to EXPORT_DIR/VERSION (default saved_models/rfcn)")
    parser.add_argument("--version", type=int, default=None,
                        help="version number (default: one more than the highest present, or 1)")
    parser.add_argument("--class-names", default=None, help=CLASS_NAMES_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")


def run(args):
    path = export_saved_model(args.model, args.export_dir, version=args.version,
                              class_names=parse_class_names(args.class_names),
                              overwrite=args.overwrite)
    print(f"wrote {path} (signatures serving_default, serving_bytes, {PADDED_SIGNATURE})")
    return None
