"""A detector from any saved form: a ``.keras`` file or a SavedModel (``rfcn_tf.export``).

Every detector maps ``inputs`` — images ``[B, H, W, 3]`` uint8/float 0..255, a list of
``[H, W, 3]`` images, or ``{"images", "image_sizes"}`` (``rfcn_tf.pack_images``) — to
numpy ``{"boxes": [B, M, 4] absolute pixels of the inputs, yxyx, "confidence": [B, M],
"labels": [B, M] int32 (-1 padding), "num_detections": [B] int32}``, whatever the
model's ``bounding_box_format``.
"""

import json
import os

import numpy as np
import tensorflow as tf

from rfcn_tf.config import RFCNConfig
from rfcn_tf.export import CONFIG_FILE, EXTRA_DIR, LABELS_FILE, load_keras, numeric_versions
from rfcn_tf.inputs import as_model_inputs, check_images, from_model_format
from rfcn_tf.signatures import PADDED_SIGNATURE

class Detector:
    """A callable detector (module doc) with the ``config`` (``RFCNConfig``) and
    ``class_names`` (list or None) of the model behind it."""

    def __init__(self, fn, config, class_names):
        self._fn = fn
        self.config = config
        self.class_names = list(class_names) if class_names is not None else None

    def __call__(self, inputs):
        return self._fn(inputs)


def load_detector(path):
    """A ``.keras`` file, a SavedModel version directory, or its parent (the highest
    version is taken) → ``(detector, class_names or None)`` (a ``Detector``)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"{path}: expected a .keras file or a SavedModel directory")
        return keras_detector(load_keras(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no model at {path}")
    if not _is_saved_model(path):
        versions = [v for v in numeric_versions(path)
                    if _is_saved_model(os.path.join(path, str(v)))]
        if not versions:
            raise FileNotFoundError(f"{path} holds neither a SavedModel (saved_model.pb) nor "
                                    "numeric version directories with one")
        path = os.path.join(path, str(versions[-1]))
    return _saved_model_detector(path)


def keras_detector(model):
    """An in-memory RFCN → ``(detector, class_names)`` as ``load_detector`` returns them."""
    box_format = model.config.bounding_box_format

    def detect(inputs):
        out = {k: np.asarray(v) for k, v in model.predict_on_batch(as_model_inputs(inputs)).items()}
        out["boxes"] = np.asarray(from_model_format(out["boxes"], box_format))
        return out

    detector = Detector(detect, model.config, model.config.class_names)
    return detector, detector.class_names


def _is_saved_model(path):
    return any(os.path.isfile(os.path.join(path, f))
               for f in ("saved_model.pb", "saved_model.pbtxt"))


def _saved_model_detector(path):
    loaded = tf.saved_model.load(path)
    if PADDED_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path} has no '{PADDED_SIGNATURE}' signature; it was not written by "
                         f"rfcn_tf.export (signatures: {sorted(loaded.signatures)})")

    def detect(inputs):  # holds `loaded`: its variables must outlive the signature
        images, sizes = check_images(**as_model_inputs(inputs))
        out = loaded.signatures[PADDED_SIGNATURE](images=tf.cast(images, tf.float32),
                                                  image_sizes=sizes)
        return {k: v.numpy() for k, v in out.items()}

    extra = os.path.join(path, EXTRA_DIR)
    names = None
    if os.path.isfile(os.path.join(extra, LABELS_FILE)):
        with open(os.path.join(extra, LABELS_FILE), encoding="utf-8") as f:
            names = [line.rstrip("\n") for line in f]
    with open(os.path.join(extra, CONFIG_FILE), encoding="utf-8") as f:
        config = RFCNConfig.from_dict(json.load(f))
    detector = Detector(detect, config, names)
    return detector, detector.class_names
