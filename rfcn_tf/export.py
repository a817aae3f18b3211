"""SavedModel export for TF Serving, and loading a detector from any saved form.

``export_saved_model(model, "saved_models/rfcn")`` writes ``saved_models/rfcn/<version>/``:

    saved_model.pb, variables/, fingerprint.pb   the SavedModel (``keras.export.ExportArchive``)
    assets.extra/labels.txt                      class names, line i = class id i (if known)
    assets.extra/rfcn_config.json                the model's ``RFCNConfig``

``assets.extra/`` is the SavedModel convention for files that live beside a model without
being loaded by its graph: TF Serving and ``tf.saved_model.load`` ignore it.

Signatures (all outputs dense and padded to ``M = config.max_detections`` rows):

``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` RGB (one size per request).
``serving_bytes``: ``encoded_images`` string ``[B]``, JPEG/PNG/GIF/BMP/WebP bytes; each is
    decoded to RGB (grayscale and RGBA converted) and the batch zero-padded, every image
    keeping its own size.
    Both return the TF Object Detection API outputs, all float32:
    ``detection_boxes [B, M, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` (divided by the
    image's height/width; always yxyx), ``detection_scores [B, M]``,
    ``detection_classes [B, M]`` **0-based** user class ids (line numbers of labels.txt,
    from 0; the OD API's are 1-based) and ``num_detections [B]``. Rows past
    ``num_detections`` are padding: boxes 0, scores 0, classes -1.
    An image whose longer side exceeds ``max_image_side`` (export option, default 1024) is
    first resized down to it (aspect kept); normalised boxes make that invisible to clients.
``predict_padded``: ``images`` float32 ``[B, H, W, 3]`` 0..255 zero-padded, ``image_sizes``
    int32 ``[B, 2]`` true (height, width) → the model's own predict contract, never
    resized: ``boxes [B, M, 4]`` absolute pixels yxyx, ``confidence [B, M]``, ``labels
    [B, M]`` int32 (-1 padding), ``num_detections [B]`` int32. ``load_detector`` uses it.

Bad requests (an empty batch, an empty string, bytes that are no image, a 0-pixel side)
fail with ``InvalidArgumentError`` saying what was wrong.
"""

import json
import os
import re
import shutil
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf
from keras.utils import bounding_boxes

from rfcn_tf.inputs import unpack_images
from rfcn_tf.model import RFCN

EXTRA_DIR = "assets.extra"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "rfcn_config.json"
SERVING_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
PADDED_SIGNATURE = "predict_padded"
DEFAULT_MAX_IMAGE_SIDE = 1024
CLASS_NAMES_HELP = "comma-separated names or a file with one per line (default: the model's)"


# ------------------------------------------------------------------------------ export
def export_saved_model(model, export_dir, version=None, name=None, class_names=None,
                       overwrite=False, max_image_side=DEFAULT_MAX_IMAGE_SIDE):
    """Write ``model`` (an ``RFCN`` or a ``.keras`` path) as ``<export_dir>[/<name>]/<version>/``
    for TF Serving and return that version directory's path.

    version: a non-negative int; default one more than the largest numeric sub-directory
    (1 for a new directory). class_names: overrides ``model.config.class_names``; must
    have ``num_classes`` entries. overwrite: replace an existing version directory
    (otherwise FileExistsError). max_image_side: the serving signatures shrink larger
    images to this longer side; None serves every image at its own size.

    The export is written into a temporary sibling (not a number, so TF Serving never
    loads it) and renamed into place once complete; on any error it is removed.
    """
    model = _as_rfcn(model)
    config = model.get_config()["config"]
    names = check_class_names(class_names if class_names is not None else config["class_names"],
                              config["num_classes"])
    config["class_names"] = names
    if max_image_side is not None and (not isinstance(max_image_side, int) or max_image_side < 1):
        raise ValueError(f"max_image_side must be a positive int or None; got {max_image_side!r}")
    base = os.path.join(os.fspath(export_dir), name) if name else os.fspath(export_dir)
    version = _next_version(base) if version is None else _check_version(version)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) "
                              "or another version")

    os.makedirs(base, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
    try:
        _build_archive(model, max_image_side).write_out(staging, verbose=False)
        _write_extras(staging, names, config)
        _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _as_rfcn(model):
    if isinstance(model, (str, os.PathLike)):
        model = _load_keras(model)
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


def _numeric_versions(base):
    """Version numbers of the all-digit sub-directories of ``base`` (as TF Serving sees them)."""
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(base, d)))


def _next_version(base):
    versions = _numeric_versions(base)
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


# ------------------------------------------------------------------------------ signatures
def _build_archive(model, max_image_side):
    """The ``ExportArchive`` with the three signatures described in the module docstring."""
    box_format = model.config.bounding_box_format

    def predict_padded(images, image_sizes):
        out = model({"images": images, "image_sizes": image_sizes}, training=False)
        boxes = tf.cast(out["boxes"], tf.float32)
        if box_format != "yxyx":
            boxes = bounding_boxes.convert_format(boxes, source=box_format, target="yxyx")
        return {"boxes": boxes, "confidence": tf.cast(out["confidence"], tf.float32),
                "labels": tf.cast(out["labels"], tf.int32),
                "num_detections": tf.cast(out["num_detections"], tf.int32)}

    def serving_outputs(images, image_sizes):
        out = predict_padded(images, image_sizes)
        scale = tf.cast(tf.tile(image_sizes, [1, 2]), tf.float32)[:, None, :]
        return {"detection_boxes": out["boxes"] / scale,
                "detection_scores": out["confidence"],
                "detection_classes": tf.cast(out["labels"], tf.float32),
                "num_detections": tf.cast(out["num_detections"], tf.float32)}

    def serving_default(images):
        shape = tf.shape(images)
        check = tf.debugging.assert_positive(
            shape[1:3], message="images must be at least 1x1 pixels; got height, width")
        with tf.control_dependencies([check]):
            images = _shrink(tf.cast(images, tf.float32), max_image_side)
        sizes = tf.tile(tf.shape(images)[None, 1:3], [shape[0], 1])
        return serving_outputs(images, sizes)

    def serving_bytes(encoded_images):
        def decode(args):
            index, data = args
            check = tf.debugging.Assert(tf.strings.length(data) > 0,
                                        ["encoded_images contains an empty string at index", index])
            with tf.control_dependencies([check]):
                image = _shrink(tf.cast(decode_image(data), tf.float32), max_image_side)
            return tf.RaggedTensor.from_tensor(image, ragged_rank=1), tf.shape(image)[:2]

        count = tf.shape(encoded_images)[0]
        check = tf.debugging.assert_positive(
            count, message="empty batch: encoded_images needs at least one image")
        with tf.control_dependencies([check]):
            indices = tf.range(count)
        images, sizes = tf.map_fn(
            decode, (indices, encoded_images),
            fn_output_signature=(tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1),
                                 tf.TensorSpec([2], tf.int32)))
        return serving_outputs(images.to_tensor(shape=[None, None, None, 3]), sizes)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_default, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint("serving_bytes", serving_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name="encoded_images")])
    archive.add_endpoint(PADDED_SIGNATURE, predict_padded, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec([None, 2], tf.int32, name="image_sizes")])
    return archive


def decode_image(data):
    """Encoded JPEG/PNG/GIF/BMP/WebP bytes → uint8 ``[H, W, 3]`` RGB (first frame of a GIF;
    grayscale and RGBA converted). Raises InvalidArgumentError for anything else."""
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def _shrink(images, max_side):
    """``[..., H, W, 3]`` float → the same, resized (antialiased, aspect kept) so that the
    longer side is at most ``max_side``; unchanged when it already is or max_side is None."""
    if max_side is None:
        return images
    size = tf.shape(images)[-3:-1]
    longest = tf.reduce_max(size)

    def resize():
        scaled = tf.cast(size, tf.float32) * (max_side / tf.cast(longest, tf.float32))
        return tf.image.resize(images, tf.maximum(tf.cast(tf.round(scaled), tf.int32), 1),
                               antialias=True)

    return tf.cond(longest > max_side, resize, lambda: images)


# ------------------------------------------------------------------------------ loading
def load_detector(path):
    """A ``.keras`` file, a SavedModel version directory, or its parent (the highest
    version is taken) → ``(detector, class_names or None)``.

    ``detector(inputs)``: ``inputs`` is images ``[B, H, W, 3]`` uint8/float 0..255 or
    ``{"images", "image_sizes"}`` (``rfcn_tf.pack_images``) → numpy ``{"boxes": [B, M, 4]
    absolute pixels yxyx, "confidence": [B, M], "labels": [B, M] int32 (-1 padding),
    "num_detections": [B] int32}``, whatever the model's ``bounding_box_format``.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"{path}: expected a .keras file or a SavedModel directory")
        return keras_detector(_load_keras(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no model at {path}")
    if not _is_saved_model(path):
        versions = [v for v in _numeric_versions(path)
                    if _is_saved_model(os.path.join(path, str(v)))]
        if not versions:
            raise FileNotFoundError(f"{path} holds neither a SavedModel (saved_model.pb) nor "
                                    "numeric version directories with one")
        path = os.path.join(path, str(versions[-1]))
    return _saved_model_detector(path)


def keras_detector(model):
    """An in-memory RFCN → ``(detector, class_names)`` as ``load_detector`` returns them."""
    box_format = model.config.bounding_box_format

    def detector(inputs):
        out = {k: np.asarray(v) for k, v in model.predict_on_batch(inputs).items()}
        if box_format != "yxyx":
            out["boxes"] = np.asarray(bounding_boxes.convert_format(
                out["boxes"], source=box_format, target="yxyx"))
        return out

    names = model.config.class_names
    return detector, list(names) if names is not None else None


def _load_keras(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    return keras.models.load_model(path)


def _is_saved_model(path):
    return any(os.path.isfile(os.path.join(path, f))
               for f in ("saved_model.pb", "saved_model.pbtxt"))


def _saved_model_detector(path):
    loaded = tf.saved_model.load(path)
    if PADDED_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path} has no '{PADDED_SIGNATURE}' signature; it was not written by "
                         f"rfcn_tf.export (signatures: {sorted(loaded.signatures)})")

    def detector(inputs):  # holds `loaded`: its variables must outlive the signature
        images, image_sizes = unpack_images(inputs)
        out = loaded.signatures[PADDED_SIGNATURE](images=tf.cast(images, tf.float32),
                                                  image_sizes=image_sizes)
        return {k: v.numpy() for k, v in out.items()}

    labels = os.path.join(path, EXTRA_DIR, LABELS_FILE)
    names = None
    if os.path.isfile(labels):
        with open(labels, encoding="utf-8") as f:
            names = [line.rstrip("\n") for line in f]
    return detector, names


# ------------------------------------------------------------------------------ command line
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
    parser.add_argument("--max-image-side", type=int, default=DEFAULT_MAX_IMAGE_SIDE,
                        help="serving shrinks larger images to this longer side; 0 = never "
                             f"(default {DEFAULT_MAX_IMAGE_SIDE})")


def run(args):
    path = export_saved_model(args.model, args.export_dir, version=args.version,
                              class_names=parse_class_names(args.class_names),
                              overwrite=args.overwrite, max_image_side=args.max_image_side or None)
    print(f"wrote {path} (signatures serving_default, serving_bytes, {PADDED_SIGNATURE})")
    return None
