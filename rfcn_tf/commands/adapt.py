"""``rfcn-tf adapt``: a ``.keras`` model → a copy whose BatchNorm statistics come from
unlabelled photos of the site it will detect in (``rfcn_tf.adapt_batchnorm``)."""

import os

from rfcn_tf.adaptation import adapt_batchnorm
from rfcn_tf.loading import load_model
from rfcn_tf.tiling import add_tiling_arguments


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="the trained model, a .keras file")
    parser.add_argument("inputs", nargs="+", help="unlabelled image files and/or folders of the new site")
    parser.add_argument("--output", required=True, help="the adapted model, a new .keras file")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images (with --tile: tiles) per forward pass (default 8)"
    )
    tiling = add_tiling_arguments(parser)
    tiling.description = (
        "with --tile the photos are cut into tiles at their own resolution: use the tile "
        "you will predict with (--overlap is ignored: the tiles do not overlap)"
    )
    tiling.add_argument(
        "--max-pixels", type=int, default=None, metavar="N", help="refuse images declaring more pixels"
    )


def run(args):
    """Returns 1 when some input could not be read (the rest were used), else None."""
    if not args.output.endswith(".keras"):
        raise ValueError(f"--output must be a .keras file; got {args.output}")
    if os.path.isdir(args.model):
        raise ValueError(
            f"--model must be a .keras file; {args.model} is a folder (an export cannot be adapted: "
            "adapt the .keras model, then export it)"
        )
    if os.path.abspath(args.output) == os.path.abspath(args.model):
        raise ValueError(f"--output must differ from --model ({args.model}): adapt writes a new file")
    model = load_model(args.model)
    counts = adapt_batchnorm(
        model, args.inputs, tile=args.tile, batch_size=args.batch_size, max_pixels=args.max_pixels, verbose=1
    )
    model.save(args.output)
    seen = (
        f"{counts['windows']} tiles of {counts['images']} images"
        if args.tile
        else f"{counts['images']} images"
    )
    print(f"{counts['batchnorms']} BatchNorms adapted on {seen} → {args.output}")
    if counts["skipped"]:
        print(f"could not read {len(counts['skipped'])}: {', '.join(counts['skipped'])}")
        return 1
    return None
