"""Exports as atomic, versioned directories: SavedModel (TF Serving), TFLite and ONNX.

``export_saved_model(model, "saved_models/rfcn")`` writes ``saved_models/rfcn/<version>/``:

    saved_model.pb, fingerprint.pb               the SavedModel (``rfcn_tf.frozen``: the weights
                                                 are constants of its graph, no variables)
    assets.extra/labels.txt                      class names, line i = class id i (if known)
    assets.extra/rfcn_config.json                the model's ``RFCNConfig``

``assets.extra/`` is the SavedModel convention for files that live beside a model without
being loaded by its graph: TF Serving and ``tf.saved_model.load`` ignore it. The
signatures are described in ``rfcn_tf.signatures``.

``export_tflite`` / ``export_onnx`` write ``<export_dir>/<version>/model.tflite`` (or
``model.onnx``) with ``labels.txt``, ``rfcn_config.json`` and ``export.json`` (format,
input size, quantisation or opset, ops) beside it; the graph is ``rfcn_tf.portable``'s
(one image of a fixed size, the model's own resize inside). Their default directories
sit next to the SavedModel's, not inside it, so TF Serving never sees a version it
cannot load.
"""

import json
import os
import shutil
import uuid

import numpy as np
import tensorflow as tf

from rfcn_tf import portable
from rfcn_tf.export_files import (  # noqa: F401 (public here as before)
    CONFIG_FILE,
    DEFAULT_DIRS,
    EXPORT_FILE,
    EXTRA_DIR,
    FORMATS,
    LABELS_FILE,
    MODEL_FILES,
    check_class_names,
    load_keras,
    numeric_versions,
)
from rfcn_tf.frozen import freeze_for_inference
from rfcn_tf.model import RFCN
from rfcn_tf.signatures import build_signatures


def export_saved_model(model, export_dir, version=None, name=None, class_names=None, overwrite=False):
    """Write ``model`` (an ``RFCN`` or a ``.keras`` path) as ``<export_dir>[/<name>]/<version>/``
    for TF Serving and return that version directory's path.

    version: a non-negative int; default one more than the largest numeric sub-directory
    (1 for a new directory). class_names: overrides ``model.config.class_names``; must
    have ``num_classes`` entries. overwrite: replace an existing version directory
    (otherwise FileExistsError). Every signature runs the model's own resize (its
    ``min_side`` / ``max_side``), so any image size may be sent.

    The export is written into a temporary sibling (not a number, so TF Serving never
    loads it) and renamed into place once complete; on any error it is removed.
    """
    model = _as_rfcn(model)
    names, config = _names_and_config(model, class_names)

    def write(directory):
        write_saved_model(model, directory)
        _write_extras(os.path.join(directory, EXTRA_DIR), names, config)

    return _write_version(export_dir, name, version, overwrite, write)


def write_saved_model(model, directory):
    """The frozen detector of ``model`` (``rfcn_tf.frozen``) as a SavedModel in ``directory``,
    with the signatures of ``rfcn_tf.signatures``."""
    detector = freeze_for_inference(model)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # not "Assets written to: <the temporary directory>"
    try:
        tf.saved_model.save(detector, directory, signatures=build_signatures(detector))
    finally:
        logger.setLevel(level)


def export_tflite(
    model,
    export_dir=DEFAULT_DIRS["tflite"],
    version=None,
    name=None,
    input_size=None,
    quantization="none",
    class_names=None,
    overwrite=False,
):
    """Write ``model`` as ``<export_dir>[/<name>]/<version>/model.tflite`` (TFLite built-in
    ops only: it runs in the plain LiteRT interpreter) and return the version directory.

    The file takes one ``images [1, H, W, 3]`` float32 RGB 0..255 image of ``input_size``
    (default: the model's scale, ``(min_side, max_side)``) and returns ``boxes [1, M, 4]``
    (pixels of that image, the model's ``bounding_box_format``), ``confidence``, ``labels``
    (-1 padding) and ``num_detections``. quantization: ``"none"``, ``"float16"`` or
    ``"dynamic_int8"``. Other arguments as ``export_saved_model``.
    """
    model = _as_rfcn(model)
    names, config = _names_and_config(model, class_names)
    size = portable.check_input_size(input_size, model.config)
    data = portable.to_tflite(model, size, quantization)  # before anything is written
    info = {
        "format": "tflite",
        "input_size": list(size),
        "quantization": quantization,
        "ops": portable.tflite_ops(data),
    }
    return _write_version(
        export_dir,
        name,
        version,
        overwrite,
        lambda d: _write_model_file(d, MODEL_FILES["tflite"], data, names, config, info),
    )


def export_onnx(
    model,
    export_dir=DEFAULT_DIRS["onnx"],
    version=None,
    name=None,
    input_size=None,
    opset=portable.ONNX_OPSET,
    class_names=None,
    overwrite=False,
):
    """Write ``model`` as ``<export_dir>[/<name>]/<version>/model.onnx`` (``tf2onnx``, ONNX
    ``opset``; runs in onnxruntime) and return the version directory. Inputs, outputs and
    the other arguments as ``export_tflite``."""
    model = _as_rfcn(model)
    names, config = _names_and_config(model, class_names)
    size = portable.check_input_size(input_size, model.config)
    proto = portable.to_onnx(model, size, opset)
    info = {
        "format": "onnx",
        "input_size": list(size),
        "opset": opset,
        "ops": sorted({node.op_type for node in proto.graph.node}),
    }
    return _write_version(
        export_dir,
        name,
        version,
        overwrite,
        lambda d: _write_model_file(d, MODEL_FILES["onnx"], proto.SerializeToString(), names, config, info),
    )


def _names_and_config(model, class_names):
    config = model.get_config()["config"]
    names = check_class_names(
        class_names if class_names is not None else config["class_names"], config["num_classes"]
    )
    config["class_names"] = names
    return names, config


def _write_version(export_dir, name, version, overwrite, write):
    """``write(directory)`` into a temporary sibling of ``<export_dir>[/<name>]/<version>``
    (not a number, so TF Serving never loads it), renamed into place once complete; on any
    error it is removed. Returns the version directory."""
    base = os.path.join(os.fspath(export_dir), name) if name else os.fspath(export_dir)
    version = _next_version(base) if version is None else _check_version(version)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (--overwrite) or another version"
        )
    os.makedirs(base, exist_ok=True)
    # os.mkdir, not mkdtemp (0700): a server running as another user (TF Serving in a
    # container) must be able to read the version this becomes; the umask decides.
    staging = os.path.join(base, f".tmp-{version}-{uuid.uuid4().hex}")
    os.mkdir(staging)
    try:
        write(staging)
        _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_model_file(directory, filename, data, names, config, info):
    with open(os.path.join(directory, filename), "wb") as f:
        f.write(data)
    _write_extras(directory, names, config)
    with open(os.path.join(directory, EXPORT_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def _as_rfcn(model):
    if isinstance(model, (str, os.PathLike)):
        model = load_keras(model)
    if not isinstance(model, RFCN):
        raise TypeError(f"exporting needs an RFCN model or a .keras path; got {type(model).__name__}")
    return model


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer; got {version!r}")
    return int(version)


def _next_version(base):
    versions = numeric_versions(base)
    return versions[-1] + 1 if versions else 1


def _write_extras(directory, names, config):
    os.makedirs(directory, exist_ok=True)
    if names is not None:
        with open(os.path.join(directory, LABELS_FILE), "w", encoding="utf-8") as f:
            f.write("".join(f"{n}\n" for n in names))
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def _move_into_place(staging, target, overwrite):
    """Rename the finished export to ``target``; an old ``target`` (overwrite) is renamed
    aside first and deleted after, or put back if the rename fails."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    if not overwrite:
        raise FileExistsError(f"{target} appeared while exporting; not overwriting it")
    old = os.path.join(os.path.dirname(target), f".old-{os.path.basename(target)}-{uuid.uuid4().hex}")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
