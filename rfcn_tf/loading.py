"""A detector from any saved form: a ``.keras`` file, a SavedModel, or a TFLite or ONNX
export (``rfcn_tf.export``); ``load_model`` reads a ``.keras`` file, of this release or an
earlier one.

Every detector maps ``inputs`` — images ``[B, H, W, 3]`` uint8/float 0..255, a list of
``[H, W, 3]`` images, or ``{"images", "image_sizes"}`` (``rfcn_tf.pack_images``) — to
numpy ``{"boxes": [B, M, 4] absolute pixels of the inputs, yxyx, "confidence": [B, M],
"labels": [B, M] int32 (-1 padding), "num_detections": [B] int32}``, whatever the
model's ``bounding_box_format``.

A TFLite or ONNX export takes one image of a fixed size: each image is scaled (aspect kept)
to fit that size, zero padded at the bottom/right, and its boxes scaled back, so at the
export's own size the detections are the model's, and close to them at other sizes.

The decoding settings (``rfcn_tf.decoding``: ``max_detections``, ``proposals``,
``score_threshold``) rebuild a ``.keras`` model; an export carries the values it was
written with, so there they can only raise the score threshold (a filter on its output).
"""

import json
import os
import warnings

import numpy as np

from rfcn_tf import _optional
from rfcn_tf.config import RFCNConfig
from rfcn_tf.decoding import FLAGS, decoding_changes, with_decoding
from rfcn_tf.export.files import (
    CONFIG_FILE,
    EXPORT_FILE,
    EXTRA_DIR,
    LABELS_FILE,
    MODEL_FILES,
    PADDED_SIGNATURE,
    numeric_versions,
)
from rfcn_tf.image_scale import resize_image
from rfcn_tf.inputs import as_model_inputs, check_images, from_model_format


class Detector:
    """A callable detector (module doc) with the ``config`` (``RFCNConfig``) and
    ``class_names`` (list or None) of the model behind it, and the ``input_size``
    ``(height, width)`` it takes (a TFLite/ONNX export's; None: any size)."""

    def __init__(self, fn, config, class_names, input_size=None):
        self._fn = fn
        self.config = config
        self.class_names = list(class_names) if class_names is not None else None
        self.input_size = tuple(input_size) if input_size is not None else None

    def __call__(self, inputs):
        return self._fn(inputs)


def load_model(path):
    """A ``.keras`` file → the model (``keras.models.load_model``, compiled as saved);
    FileNotFoundError when there is none. A model file of rfcn_tf 0.2–0.7 (layout 2) is
    read into this release's layout (``rfcn_tf.model_files``), not compiled, with a warning:
    ``rfcn_tf.load_model(old).save(new)`` converts it once."""
    import keras

    from rfcn_tf.model_files import read_layout_2, stored_layout

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    if path.endswith(".keras") and stored_layout(path) == 2:
        warnings.warn(
            f"{path} was written by rfcn_tf 0.2–0.7 (model-file layout 2): read into this "
            "release's layout, without its optimizer state; rfcn_tf.load_model(path).save(new_path) "
            "converts it once",
            stacklevel=2,
        )
        return read_layout_2(path)
    return keras.models.load_model(path)


def load_detector(
    path, max_detections=None, proposals=None, score_threshold=None, min_side=None, max_side=None
):
    """A ``.keras`` file, an export's version directory (SavedModel, TFLite or ONNX), or
    its parent (the highest version is taken) → ``(detector, class_names or None)`` (a
    ``Detector``). The test-time settings (None = the model's; ``rfcn_tf.decoding``): an
    export refuses other ``max_detections`` / ``proposals`` / scale than its own and a lower
    ``score_threshold`` (ValueError naming the flag)."""
    path = os.fspath(path)
    settings = dict(
        max_detections=max_detections,
        proposals=proposals,
        score_threshold=score_threshold,
        min_side=min_side,
        max_side=max_side,
    )
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"{path}: expected a .keras file or an export directory (rfcn-tf export)")
        return keras_detector(load_model(path), **settings)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no model at {path}")
    if _export_kind(path) is None:
        versions = [v for v in numeric_versions(path) if _export_kind(os.path.join(path, str(v)))]
        if not versions:
            raise FileNotFoundError(
                f"{path} holds neither an export (saved_model.pb, "
                "model.tflite or model.onnx) nor numeric version "
                "directories with one"
            )
        path = os.path.join(path, str(versions[-1]))
    kind = _export_kind(path)
    backend = _optional.keras_backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{path}: a {kind} export as the model: TensorFlow backend only, and the Keras backend "
            f"is {backend!r} (run with --backend tensorflow, or give the .keras model)"
        )
    if kind == "saved_model":
        detector, names = _saved_model_detector(path)
    else:
        detector, names = _portable_detector(path, kind)
    return _fixed_decoding(detector, path, **settings), names


def keras_detector(
    model, max_detections=None, proposals=None, score_threshold=None, min_side=None, max_side=None
):
    """An in-memory RFCN → ``(detector, class_names)`` as ``load_detector`` returns them;
    rebuilt first with other test-time settings when given (``with_decoding``)."""
    lower = score_threshold is not None and score_threshold < model.config.score_threshold
    model = with_decoding(
        model, max_detections, proposals, score_threshold if lower else None, min_side, max_side
    )
    box_format = model.config.bounding_box_format

    def detect(inputs):
        out = {k: np.asarray(v) for k, v in model.predict_on_batch(as_model_inputs(inputs)).items()}
        out["boxes"] = np.asarray(from_model_format(out["boxes"], box_format))
        return out

    detector = _score_filter(Detector(detect, model.config, model.config.class_names), score_threshold)
    return detector, detector.class_names


def _fixed_decoding(detector, path, **settings):
    """An export's ``detector`` with the decoding ``settings`` it can honour: a higher
    score threshold filters its output; anything else that differs is a ValueError."""
    config = detector.config
    changes = decoding_changes(config, **settings)
    threshold = changes.pop("score_threshold", None)
    if threshold is not None and threshold < config.score_threshold:
        changes["score_threshold"] = threshold
    scale = [name for name in ("min_side", "max_side") if name in changes]
    if scale:
        raise ValueError(
            f"{FLAGS[scale[0]]}: the export at {path} runs at min_side={config.min_side}, "
            f"max_side={config.max_side}, fixed when it was written; give the .keras model to "
            "run at another scale"
        )
    if changes:
        name = "proposals" if "rpn_post_nms_test" in changes else next(iter(changes))
        field = "rpn_post_nms_test" if name == "proposals" else name
        raise ValueError(
            f"{FLAGS[name]}: the export at {path} was written with {field}="
            f"{getattr(config, field)} and cannot change it; export the .keras model again "
            f"with {FLAGS[name]} (rfcn-tf export {FLAGS[name]} ...)"
        )
    return _score_filter(detector, threshold)


def _score_filter(detector, threshold):
    """``detector`` reporting only detections scoring at least ``threshold`` (when above its
    decoder's): the same as decoding at that threshold, since NMS keeps the best boxes first
    and a box below it suppresses none above."""
    if threshold is None or threshold <= detector.config.score_threshold:
        return detector

    def detect(inputs):
        out = detector(inputs)
        keep = (out["confidence"] >= threshold) & (out["labels"] >= 0)
        order = np.argsort(~keep, axis=1, kind="stable")  # the kept rows first, in order
        keep = np.take_along_axis(keep, order, 1)
        pick = {
            k: np.take_along_axis(out[k], order[..., None] if k == "boxes" else order, 1)
            for k in ("boxes", "confidence", "labels")
        }
        return {
            "boxes": np.where(keep[..., None], pick["boxes"], 0).astype(np.float32),
            "confidence": np.where(keep, pick["confidence"], 0).astype(np.float32),
            "labels": np.where(keep, pick["labels"], -1).astype(np.int32),
            "num_detections": keep.sum(axis=1).astype(np.int32),
        }

    return Detector(
        detect,
        detector.config.replace(score_threshold=float(threshold)),
        detector.class_names,
        detector.input_size,
    )


def _export_kind(path):
    """ "saved_model", "tflite", "onnx" or None: what the directory ``path`` holds."""
    if any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
        return "saved_model"
    for kind, filename in MODEL_FILES.items():
        if os.path.isfile(os.path.join(path, filename)):
            return kind
    return None


def _saved_model_detector(path):
    tf = _optional.tensorflow(f"loading the SavedModel {path}")
    loaded = tf.saved_model.load(path)
    if PADDED_SIGNATURE not in loaded.signatures:
        raise ValueError(
            f"{path} has no '{PADDED_SIGNATURE}' signature; it was not written by "
            f"rfcn_tf.export (signatures: {sorted(loaded.signatures)})"
        )

    def detect(inputs):  # holds `loaded`: its variables must outlive the signature
        images, sizes = check_images(**as_model_inputs(inputs))
        out = loaded.signatures[PADDED_SIGNATURE](images=tf.cast(images, tf.float32), image_sizes=sizes)
        return {k: v.numpy() for k, v in out.items()}

    config, names = _read_extras(os.path.join(path, EXTRA_DIR))
    detector = Detector(detect, config, names)
    return detector, detector.class_names


def _read_extras(directory):
    names = None
    if os.path.isfile(os.path.join(directory, LABELS_FILE)):
        with open(os.path.join(directory, LABELS_FILE), encoding="utf-8") as f:
            names = [line.rstrip("\n") for line in f]
    with open(os.path.join(directory, CONFIG_FILE), encoding="utf-8") as f:
        config = RFCNConfig.from_dict(json.load(f))
    return config, names


def _portable_detector(path, kind, num_threads=None):
    """A TFLite (``ai-edge-litert``) or ONNX (``onnxruntime``) export as a ``Detector``."""
    tf = _optional.tensorflow(f"loading the {kind} export {path}")
    config, names = _read_extras(path)
    with open(os.path.join(path, EXPORT_FILE), encoding="utf-8") as f:
        height, width = json.load(f)["input_size"]
    run = runtime(os.path.join(path, MODEL_FILES[kind]), kind, num_threads or os.cpu_count())

    def detect(inputs):
        images, sizes = check_images(**as_model_inputs(inputs))
        results = []
        for image, (h, w) in zip(tf.unstack(images), sizes.numpy()):
            scale = min(height / h, width / w)
            new = (min(height, round(h * scale)), min(width, round(w * scale)))
            fitted = resize_image(image[:h, :w], tf.constant(new, tf.int32)).numpy()
            canvas = np.zeros((1, height, width, 3), np.float32)
            canvas[0, : new[0], : new[1]] = fitted
            out = run(canvas)
            out["boxes"] = np.asarray(from_model_format(out["boxes"], config.bounding_box_format))
            boxes = out["boxes"] / np.tile([new[0] / h, new[1] / w], 2)
            out["boxes"] = np.clip(boxes, 0, np.tile([h, w], 2)).astype(np.float32)
            results.append(out)
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}

    detector = Detector(detect, config, names, input_size=(height, width))
    return detector, detector.class_names


def runtime(model_file, kind, num_threads):
    """A ``.tflite`` (kind "tflite") or ``.onnx`` file → ``run(images [1, H, W, 3] float32) →
    {output name: array}`` in LiteRT or onnxruntime with ``num_threads`` threads."""
    if kind == "tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ModuleNotFoundError(
                "running a TFLite export needs ai-edge-litert: pip install 'rfcn_tf[tflite]'",
                name="ai_edge_litert",
            ) from error
        runner = Interpreter(model_path=model_file, num_threads=num_threads).get_signature_runner()
        return lambda images: runner(images=images)
    try:
        import onnxruntime
    except ImportError as error:
        raise ModuleNotFoundError(
            "running an ONNX export needs onnxruntime: pip install 'rfcn_tf[onnx]'", name="onnxruntime"
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    return lambda images: dict(zip(outputs, session.run(outputs, {"images": images})))
