"""``rfcn-tf``: train | evaluate | export | predict | demo.

Each subcommand is ``add_arguments(parser)`` + ``run(args)`` in ``rfcn_tf.commands``;
this file only wires them together.
"""

import argparse
import importlib.metadata
import logging
import os
import sys

from rfcn_tf._version import __version__

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _commands():
    from rfcn_tf.commands import demo, evaluate, export, predict, train

    return {
        "train": (train, "train R-FCN on a dataset (built-in, TFDS, VOC folder, COCO JSON)"),
        "evaluate": (evaluate, "per-class AP of a saved model (.keras or SavedModel) on a dataset"),
        "export": (export, "write a SavedModel for TF Serving"),
        "predict": (predict, "detect objects in image files; JSON and PNGs with boxes"),
        "demo": (demo, "train on the synthetic dataset, evaluate, export, predict (offline, CPU)"),
    }


def package_version():
    """The installed distribution's version; the source tree's ``rfcn_tf.__version__`` when the
    package runs uninstalled (from a checkout on ``PYTHONPATH``)."""
    try:
        return importlib.metadata.version("rfcn_tf")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser():
    parser = argparse.ArgumentParser(prog="rfcn-tf", description="R-FCN object detection for Keras 3 / TF 2.")
    parser.add_argument("--version", action="version", version=f"rfcn-tf {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _commands().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, OSError, ImportError) as error:  # FileNotFoundError, …; a missing extra
        print(f"rfcn-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
