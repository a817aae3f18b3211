"""SavedModel export for TF Serving: an atomic, versioned directory.

``export_saved_model(model, "saved_models/rfcn")`` writes ``saved_models/rfcn/<version>/``:

    saved_model.pb, variables/, fingerprint.pb   the SavedModel (``keras.export.ExportArchive``)
    assets.extra/labels.txt                      class names, line i = class id i (if known)
    assets.extra/rfcn_config.json                the model's ``RFCNConfig``

``assets.extra/`` is the SavedModel convention for files that live beside a model without
being loaded by its graph: TF Serving and ``tf.saved_model.load`` ignore it. The
signatures are described in ``rfcn_tf.signatures``.
"""

import json
import os
import re
import shutil
import tempfile
import uuid

import keras
import numpy as np

from rfcn_tf.model import RFCN
from rfcn_tf.signatures import build_archive

EXTRA_DIR = "assets.extra"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "rfcn_config.json"


def export_saved_model(model, export_dir, version=None, name=None, class_names=None,
                       overwrite=False):
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
    config = model.get_config()["config"]
    names = check_class_names(class_names if class_names is not None else config["class_names"],
                              config["num_classes"])
    config["class_names"] = names
    base = os.path.join(os.fspath(export_dir), name) if name else os.fspath(export_dir)
    version = _next_version(base) if version is None else _check_version(version)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) "
                              "or another version")

    os.makedirs(base, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
    try:
        build_archive(model).write_out(staging, verbose=False)
        _write_extras(staging, names, config)
        _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _as_rfcn(model):
    if isinstance(model, (str, os.PathLike)):
        model = load_keras(model)
    if not isinstance(model, RFCN):
        raise TypeError(f"export_saved_model needs an RFCN model or a .keras path; "
                        f"got {type(model).__name__}")
    return model


def check_class_names(names, num_classes):
    """``names`` as a list of ``num_classes`` non-empty one-line strings (or None);
    ValueError otherwise."""
    if names is None:
        return None
    names = list(names)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a model with {num_classes} classes")
    for n in names:
        if not isinstance(n, str) or not n.strip() or "\n" in n or "\r" in n:
            raise ValueError(f"class names must be non-empty one-line strings; got {n!r}")
    return names


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer; got {version!r}")
    return int(version)


def numeric_versions(base):
    """Version numbers of the all-digit sub-directories of ``base`` (as TF Serving sees them)."""
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(base, d)))


def _next_version(base):
    versions = numeric_versions(base)
    return versions[-1] + 1 if versions else 1


def _write_extras(directory, names, config):
    extra = os.path.join(directory, EXTRA_DIR)
    os.makedirs(extra, exist_ok=True)
    if names is not None:
        with open(os.path.join(extra, LABELS_FILE), "w", encoding="utf-8") as f:
            f.write("".join(f"{n}\n" for n in names))
    with open(os.path.join(extra, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def _move_into_place(staging, target, overwrite):
    """Rename the finished export to ``target``; an old ``target`` (overwrite) is renamed
    aside first and deleted after, or put back if the rename fails."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    if not overwrite:
        raise FileExistsError(f"{target} appeared while exporting; not overwriting it")
    old = os.path.join(os.path.dirname(target),
                       f".old-{os.path.basename(target)}-{uuid.uuid4().hex}")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_keras(path):
    """A ``.keras`` file → the model; FileNotFoundError when there is none."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    return keras.models.load_model(path)
