"""A model written as a new version directory, ``<export_dir>[/<name>]/<version>/``, atomically,
with its extras (``files.LABELS_FILE``, ``files.CONFIG_FILE``): the steps every writer of
``rfcn_tf.export`` shares. Without TensorFlow.
"""

import json
import os
import shutil
import uuid

import numpy as np

from rfcn_tf.config import check_class_names
from rfcn_tf.export.files import CONFIG_FILE, EXPORT_FILE, LABELS_FILE, numeric_versions


def as_rfcn(model):
    """An ``RFCN``, or a ``.keras`` path loaded; TypeError for anything else."""
    from rfcn_tf.loading import load_model
    from rfcn_tf.model import RFCN

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not isinstance(model, RFCN):
        raise TypeError(f"exporting needs an RFCN model or a .keras path; got {type(model).__name__}")
    return model


def names_and_config(model, class_names):
    """→ ``(class names or None, the model's config dict)``: ``class_names`` (checked) or the
    model's own, written into the config too."""
    config = model.get_config()["config"]
    names = check_class_names(
        class_names if class_names is not None else config["class_names"], config["num_classes"]
    )
    config["class_names"] = names
    return names, config


def write_version(export_dir, name, version, overwrite, write):
    """``write(directory)`` into a temporary sibling of ``<export_dir>[/<name>]/<version>``
    (not a number, so TF Serving never loads it), renamed into place once complete; on any
    error it is removed. version: a non-negative int, or None for one more than the largest
    there (1 for a new directory). Returns the version directory."""
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


def write_extras(directory, names, config):
    """``LABELS_FILE`` (line i = class i; only when ``names``) and ``CONFIG_FILE`` in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    if names is not None:
        with open(os.path.join(directory, LABELS_FILE), "w", encoding="utf-8") as f:
            f.write("".join(f"{n}\n" for n in names))
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def write_model_file(directory, filename, data, names, config, info):
    """A single-file export: ``data`` (bytes) as ``filename``, the extras and ``info`` as
    ``EXPORT_FILE``, all in ``directory``."""
    with open(os.path.join(directory, filename), "wb") as f:
        f.write(data)
    write_extras(directory, names, config)
    with open(os.path.join(directory, EXPORT_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer; got {version!r}")
    return int(version)


def _next_version(base):
    versions = numeric_versions(base)
    return versions[-1] + 1 if versions else 1


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
