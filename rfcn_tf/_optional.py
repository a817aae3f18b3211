"""TensorFlow as an optional dependency: the clear error a TF-only feature raises without it.

The model runs on any Keras 3 backend; the tf.data pipeline, TFDS datasets, exports
(SavedModel, TFLite, ONNX), frozen graphs, ``tf.distribute`` and TensorBoard pictures need
TensorFlow itself.
"""

import importlib
import importlib.util
import json
import os
import sys

TF_PACKAGES = ("tensorflow", "tf_keras", "tensorflow_datasets")
INSTALL = "pip install 'rfcn_tf[cpu]' (tensorflow-cpu) or 'rfcn_tf[gpu]' (tensorflow[and-cuda])"


def is_missing_tensorflow(error):
    """Whether a ``ModuleNotFoundError`` is about TensorFlow or one of its packages."""
    return isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in TF_PACKAGES


def needs_tensorflow(feature, error=None):
    """The ``ModuleNotFoundError`` for ``feature`` (what the user asked for) without TensorFlow."""
    missing = error.name if error is not None and error.name else "tensorflow"
    other = " (or set KERAS_BACKEND=jax or torch)" if keras_backend() == "tensorflow" else ""
    return ModuleNotFoundError(
        f"{feature} needs TensorFlow ({missing!r} is not installed): {INSTALL}{other}", name=missing
    )


def import_for(module, feature):
    """``importlib.import_module(module)``; a missing TensorFlow becomes :func:`needs_tensorflow`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if is_missing_tensorflow(error):
            raise needs_tensorflow(feature, error) from error
        raise


def tensorflow(feature):
    """``import tensorflow`` for ``feature``, raising :func:`needs_tensorflow` without it."""
    return import_for("tensorflow", feature)


def has_tensorflow():
    """Whether ``import tensorflow`` would find the package (without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ImportError:
        return False


def keras_backend():
    """The Keras backend of this process, without importing Keras when it is not yet imported.

    Keras's own rule: ``KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json``
    (``~/.keras``, or ``/tmp/.keras`` when home is not writable), else ``"tensorflow"``.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(os.path.expanduser(home), "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def lazy_names(namespace, names, registering=()):
    """PEP 562 for a package: ``(__getattr__, __dir__)`` importing ``names`` on first use.

    namespace: the package's ``globals()``. names: ``{name: (module, attribute or None for
    the module itself, the feature a missing TensorFlow is reported as)}``. ``eager()`` (the
    third value): under the TensorFlow backend with TensorFlow installed every name is
    imported at once, as the package did before it had lazy names; under another backend the
    ``registering`` names (what ``keras.saving.load_model`` must find registered).
    """
    package = namespace["__name__"]

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute, feature = names[name]
        value = import_for(module, feature)
        if attribute is not None:
            value = getattr(value, attribute)
        namespace[name] = value
        return value

    def __dir__():
        return sorted({*namespace, *names})

    def eager():
        backend = keras_backend()
        if backend == "tensorflow":
            for name in names if has_tensorflow() else ():
                __getattr__(name)
        else:
            for name in registering:
                __getattr__(name)

    return __getattr__, __dir__, eager
