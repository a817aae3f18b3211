"""``rfcn-tf``: train | evaluate | export | predict | demo.

Each subcommand is ``add_arguments(parser)`` + ``run(args)`` in ``rfcn_tf.commands``;
this file only wires them together, and picks the Keras backend (``--backend``, else
``KERAS_BACKEND``, else Keras's configuration) before anything imports Keras.
"""

import argparse
import importlib.metadata
import logging
import os
import sys

from rfcn_tf import _optional
from rfcn_tf._version import __version__

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKENDS = ("tensorflow", "jax", "torch")
# What only TensorFlow has: (subcommand, option or None, its value or None, what it is).
TF_ONLY = (
    ("export", None, None, "SavedModel, TFLite and ONNX exports"),
    ("train", "strategy", "mirrored", "--strategy mirrored (tf.distribute)"),
    ("train", "strategy", "multi_worker", "--strategy multi_worker (tf.distribute)"),
    *(
        ("train", "augment", name, f"--augment {name} (tf.data)")
        for name in ("standard", "strong", "overhead")
    ),
)


def _commands():
    from rfcn_tf.commands import adapt, demo, evaluate, export, predict, train

    return {
        "train": (train, "train R-FCN on a dataset (built-in, TFDS, VOC folder, COCO JSON)"),
        "evaluate": (evaluate, "per-class AP of a .keras model or an export on a dataset"),
        "export": (export, "write a SavedModel for TF Serving, or a TFLite or ONNX file"),
        "predict": (predict, "detect objects in image files; JSON and PNGs with boxes"),
        "adapt": (adapt, "re-estimate a model's BatchNorm statistics on unlabelled photos of a new site"),
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
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else Keras's configuration, tensorflow); "
        "exports and tf.distribute need tensorflow",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _commands().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _requested_backend(argv):
    """``--backend`` from the command line, read before the full parser (which imports Keras)."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--backend", choices=BACKENDS, default=None)
    return early.parse_known_args(argv)[0].backend


def _use_backend(backend, argv):
    """Make ``backend`` Keras's. Keras fixes its backend when first imported: if ``import
    rfcn_tf`` already imported it with another one (the TensorFlow backend imports the whole
    package), run the command again in a fresh process with ``KERAS_BACKEND`` set."""
    os.environ["KERAS_BACKEND"] = backend
    if "keras" in sys.modules and _optional.keras_backend() != backend:
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "rfcn_tf.cli", *argv])


def _check_backend(args, backend):
    """A TensorFlow-only subcommand or option under another backend → its error line."""
    if backend == "tensorflow":
        return None
    for command, option, value, feature in TF_ONLY:
        if args.command == command and (option is None or getattr(args, option, None) == value):
            return (
                f"{feature}: TensorFlow backend only, and the Keras backend is {backend!r} "
                f"(run with --backend tensorflow; {_optional.INSTALL})"
            )
    return None


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    backend = _requested_backend(argv)
    if backend is not None:
        _use_backend(backend, argv)
    backend = _optional.keras_backend()
    if backend == "tensorflow" and not _optional.has_tensorflow():
        print(
            "rfcn-tf: error: the Keras backend is tensorflow, which is not installed: "
            f"{_optional.INSTALL}, or run with --backend jax / --backend torch",
            file=sys.stderr,
        )
        return 2
    try:
        parser = build_parser()
    except ModuleNotFoundError as error:
        if not _optional.is_missing_tensorflow(error):
            raise
        print(f"rfcn-tf: error: {_optional.needs_tensorflow('the rfcn-tf commands', error)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    problem = _check_backend(args, backend)
    if problem:
        print(f"rfcn-tf {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        result = args.run(args)
    except (ValueError, OSError, ImportError) as error:  # FileNotFoundError, …; a missing extra
        print(f"rfcn-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
