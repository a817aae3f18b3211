"""Command-line dataset options shared by ``rfcn-tf train`` and ``rfcn-tf evaluate``.

Under the TensorFlow backend the examples come from ``load_examples`` and the batches from
``make_pipeline`` (tf.data); under JAX and PyTorch from ``read_examples`` and
``DetectionDataset`` (numpy and Pillow: no TFDS names, ``--augment`` none or flip), under JAX
on one canvas of ``max_side × max_side`` with a fixed box count, so its step compiles once.
"""

import argparse
import os

from rfcn_tf import _optional
from rfcn_tf.data.py_dataset import AUGMENT_PRESETS, AUTO_FACTOR


def add_dataset_arguments(parser, default_split):
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--dataset",
        default="rfcn_shapes",
        help="'rfcn_shapes' (built in), a TFDS name such as 'voc/2007', a Pascal-VOC "
        "folder, a COCO folder or a COCO JSON file (default: rfcn_shapes)",
    )
    group.add_argument(
        "--split",
        default=default_split,
        help=f"split to use (default: {default_split}); for a Pascal-VOC folder a name in "
        "ImageSets/Main, or 'all' for every annotation (a folder without ImageSets)",
    )
    group.add_argument("--data-dir", default=None, help="TFDS data directory")
    group.add_argument("--image-dir", default=None, help="image folder of a COCO JSON file")
    group.add_argument(
        "--min-side",
        type=int,
        nargs="+",
        default=None,
        help="the model's scale: shorter image side (default: the configuration's, "
        "600, or 192 with --small); several values = multi-scale training; evaluate: the "
        "scale a .keras model runs at (an export's is fixed)",
    )
    group.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="cap on the longer side (default: the configuration's, 1000, or 320 with --small)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images per batch (default 1); training under --strategy mirrored: per replica",
    )


def add_augment_arguments(parser):
    """``--augment`` and ``--crop`` (training only; ``docs/augmentation.md``)."""
    group = parser.add_argument_group("augmentation")
    group.add_argument(
        "--augment",
        default="flip",
        choices=AUGMENT_PRESETS,
        help="training augmentation: none; flip (default: horizontal flips); "
        "standard (colour, blur, scale jitter, translation, flips); strong "
        "(more of it); overhead (standard + vertical flips and 90° rotations, "
        "for top-down images)",
    )
    group.add_argument(
        "--crop",
        default="auto",
        type=_crop_value,
        metavar="SIZE|auto|none",
        help="train on random crops at native resolution: auto (default) cuts "
        f"images longer than {AUTO_FACTOR} × max-side into min-side × max-side "
        "windows; SIZE: SIZE × SIZE windows of every larger image, then the "
        "usual resize; none",
    )


def _crop_value(text):
    if text in ("auto", "none"):
        return text
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected auto, none or a positive size in pixels, got {text!r}")
    return size


def scale_from_args(args):
    """The ``RFCNConfig`` fields ``--min-side`` / ``--max-side`` override (only those given)."""
    scale = {}
    if args.min_side is not None:
        scale["min_side"] = tuple(args.min_side)
    if args.max_side is not None:
        scale["max_side"] = args.max_side
    return scale


def uses_tf_data():
    """Whether the batches come from ``make_pipeline`` (the TensorFlow backend) or from
    ``DetectionDataset`` (module doc)."""
    return _optional.keras_backend() == "tensorflow"


def examples_from_args(args, split, training=False, seed=None):
    """→ ``(examples, class_names)`` following the options above: a ``tf.data.Dataset`` of
    common examples (shuffled by ``seed`` in training), or under another backend a sequence
    of them (``read_examples``; ``DetectionDataset`` shuffles)."""
    if not uses_tf_data():
        from rfcn_tf.data.py_dataset import read_examples

        return read_examples(args.dataset, _source_split(args.dataset, split), image_dir=args.image_dir)
    from rfcn_tf.data.sources import load_examples

    return load_examples(
        args.dataset,
        _source_split(args.dataset, split),
        data_dir=args.data_dir,
        image_dir=args.image_dir,
        shuffle=training,
        seed=seed,
    )


def batches_from_args(args, examples, config, training=False, seed=None, replicas=1, drop_remainder=False):
    """Examples → batches of ``--batch-size × replicas`` at ``config``'s scale (``min_side`` /
    ``max_side``; the model resizes to it as well, so this only saves work) with boxes in its
    box format; in training with ``--augment`` and ``--crop``."""
    common = dict(
        min_side=config.min_side,
        max_side=config.max_side,
        training=training,
        seed=seed,
        drop_remainder=drop_remainder,
        bounding_box_format=config.bounding_box_format,
        **({"augment": args.augment, "crop": args.crop} if training else {}),
    )
    if not uses_tf_data():
        from rfcn_tf.data.py_dataset import DetectionDataset

        fixed = _optional.keras_backend() == "jax"
        return DetectionDataset(
            examples,
            args.batch_size * replicas,
            canvas=(config.max_side, config.max_side) if fixed else None,  # holds any image
            max_boxes=max(examples.max_boxes(), 1) if fixed else None,
            **common,
        )
    from rfcn_tf.data.pipeline import make_pipeline

    return make_pipeline(examples, args.batch_size * replicas, **common)


def _source_split(dataset, split):
    """``--split all`` on a Pascal-VOC folder without an ``ImageSets/Main/all.txt`` → None
    (every annotation): the command line has no other way to say "no split file"."""
    root = os.path.expanduser(dataset)
    if (
        split == "all"
        and os.path.isdir(os.path.join(root, "Annotations"))
        and not os.path.isfile(os.path.join(root, "ImageSets", "Main", "all.txt"))
    ):
        return None
    return split
