"""Detection on image files: ``detections.json`` and one PNG with labelled boxes per image.

``detections.json`` is a list, one entry per input file in input order::

    {"file": "photos/cat.jpg", "width": 640, "height": 480, "output": "cat.png",
     "detections": [{"box": [ymin, xmin, ymax, xmax] (pixels), "score": 0.91,
                     "label": 0 (0-based class id), "label_name": "cat" or null}, ...]}

Boxes are pixels of the original file, whatever size the model ran at. A JPEG larger than
the model's scale is decoded at a reduced size (1/2, 1/4 or 1/8, never below the model's
input size), so a phone photo costs about what its downscaled copy does; its picture is
drawn at that size. Files are decoded by TensorFlow (``image_io``) under its backend, by
Pillow (``rfcn_tf.data.py_dataset.read_image``, the same size checks) under the others.
With ``tile`` each image is decoded at full size and detected tile by tile
(``rfcn_tf.tiling.predict_tiled``). A file that cannot be read or decoded (or
declares more than ``max_pixels`` pixels) gets ``{"file": ..., "error": "why"}`` instead,
and a logged warning; the other files are still processed. An image whose detections
reach the model's ``max_detections`` gets a logged warning naming ``--max-detections``.
"""

import json
import logging
import os

import keras
import numpy as np

from rfcn_tf.config import check_class_names
from rfcn_tf.data.py_dataset import MAX_IMAGE_PIXELS
from rfcn_tf.decoding import warn_capped
from rfcn_tf.image_scale import inference_side, static_resized_size
from rfcn_tf.inputs import pack_images
from rfcn_tf.loading import keras_detector, load_detector
from rfcn_tf.progress import Progress
from rfcn_tf.tiling import predict_tiled
from rfcn_tf.visualize import draw_detections, save_png

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
RESULTS_FILE = "detections.json"
# Tiled inference reads images at full size, a window at a time: a higher default limit
# (2^29 pixels: 1.6 GB as RGB uint8, e.g. 23170 × 23170) than a whole-image pass (2^27).
TILED_MAX_PIXELS = 2**29
logger = logging.getLogger(__name__)


def predict_files(
    model_path_or_model,
    inputs,
    output_dir,
    score_threshold=0.3,
    class_names=None,
    batch_size=4,
    tile=None,
    overlap=0.2,
    max_pixels=None,
    max_detections=None,
    proposals=None,
    verbose=0,
):
    """Detect objects in image files; write ``output_dir/detections.json`` and a PNG per
    image; return the list written to the JSON (module docstring).

    model_path_or_model: an RFCN model, or a ``.keras`` / export path (``load_detector``).
    inputs: a path or a list of paths; a folder contributes its files with an image
    extension (``IMAGE_EXTENSIONS``, sorted, not recursive), a file is always tried.
    score_threshold: detections scoring less are not reported.
    class_names: overrides the model's names in the JSON and on the pictures.
    batch_size: images (with ``tile``: tiles) per model call (padded together with
    ``pack_images``).
    tile, overlap: detect tile by tile (``predict_tiled``; tile an int or (height, width)).
    max_pixels: refuse images declaring more pixels (default ``image_io.MAX_IMAGE_PIXELS``,
    ``TILED_MAX_PIXELS`` with ``tile``). max_detections, proposals: ``rfcn_tf.decoding``.
    verbose: 1 shows the progress in images (``rfcn_tf.progress``).
    """
    decoding = dict(max_detections=max_detections, proposals=proposals, score_threshold=score_threshold)
    if isinstance(model_path_or_model, keras.Model):
        detector, model_names = keras_detector(model_path_or_model, **decoding)
    elif isinstance(model_path_or_model, (str, os.PathLike)):
        detector, model_names = load_detector(model_path_or_model, **decoding)
    else:
        raise TypeError(
            f"predict_files needs an RFCN model or a model path; got {type(model_path_or_model).__name__}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    names = model_names
    if class_names is not None:
        names = (
            check_class_names(class_names, len(model_names)) if model_names is not None else list(class_names)
        )
    files = list_images(inputs)
    os.makedirs(output_dir, exist_ok=True)
    model_size = model_target_size(detector.config.min_side, detector.config.max_side)
    if max_pixels is None:
        max_pixels = MAX_IMAGE_PIXELS if tile is None else TILED_MAX_PIXELS
    # Tiled: one image at a time, at full size, its tiles batched; else images batched.
    step = 1 if tile is not None else int(batch_size)

    results, outputs = [], set()
    progress = Progress(len(files), "predict", "images", verbose=verbose)
    for start in range(0, len(files), step):
        loaded = [
            (path, read_or_reason(path, None if tile else model_size, max_pixels))
            for path in files[start : start + step]
        ]
        good = [(path, read) for path, read in loaded if not isinstance(read, str)]
        images = [image for _, (image, _) in good]
        if tile is not None:
            detections = [_detect_tiled(detector, image, tile, overlap, batch_size) for image in images]
        else:
            detections = _detect(detector, images) if good else []
        by_path = dict(zip([path for path, _ in good], detections))
        for path, read in loaded:
            if isinstance(read, str):
                logger.warning("skipping %s: %s", path, read)
                results.append({"file": path, "error": read})
                continue
            image, (height, width) = read
            boxes, scores, labels = by_path[path]
            if tile is None and len(scores) >= detector.config.max_detections:
                warn_capped(path, detector.config.max_detections)
            keep = scores >= score_threshold
            output = _unique_name(path, outputs)
            drawn = draw_detections(image, boxes[keep], scores[keep], labels[keep], class_names=names)
            save_png(drawn, os.path.join(output_dir, output))
            to_file = np.array([height, width] * 2, np.float64) / (image.shape[:2] * 2)
            results.append(
                {
                    "file": path,
                    "width": int(width),
                    "height": int(height),
                    "output": output,
                    "detections": [
                        {
                            "box": [float(v) for v in box * to_file],
                            "score": float(score),
                            "label": int(label),
                            "label_name": _name(names, label),
                        }
                        for box, score, label in zip(boxes[keep], scores[keep], labels[keep])
                    ],
                }
            )
        progress.update(len(results))
    progress.finish()
    with open(os.path.join(output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return results


def list_images(inputs):
    """A path or list of paths (files and folders) → the image files, in order."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise ValueError("no input images given")
    files = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f))
            )
            if not found:
                raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def model_target_size(min_side, max_side):
    """The model's resize rule as ``(height, width) → (h, w)`` for the image readers (the
    largest ``min_side``): ``image_scale.target_size`` under TensorFlow, else in numpy."""
    if keras.backend.backend() == "tensorflow":
        from rfcn_tf.image_scale import target_size

        return target_size(min_side, max_side)
    side = inference_side(min_side)
    return lambda height, width: tuple(static_resized_size((height, width), side, max_side))


def read_or_reason(path, size_fn, max_pixels):
    """``(uint8 [h, w, 3] RGB, (height, width) of the file)``, or the reason it could not
    be read (a str)."""
    if keras.backend.backend() == "tensorflow":
        from rfcn_tf.image_io import read_image
    else:
        from rfcn_tf.data.py_dataset import read_image
    try:
        return read_image(path, target_size=size_fn, max_pixels=max_pixels)
    except (OSError, ValueError) as error:
        return f"cannot read image: {error}"


def _detect(detector, images):
    """``[H_i, W_i, 3]`` images → per image ``(boxes [n, 4] yxyx px, scores [n], labels [n])``.
    Under JAX and PyTorch the model resizes only unpadded batches: one image per call."""
    if keras.backend.backend() != "tensorflow":
        return [found for image in images for found in _detect_unpadded(detector, image[None])]
    return _detect_unpadded(detector, pack_images(images))


def _detect_unpadded(detector, inputs):
    """``_detect`` of one model input (a packed batch, or images of one size)."""
    out = detector(inputs)
    return [
        (out["boxes"][b, :n], out["confidence"][b, :n], out["labels"][b, :n])
        for b, n in enumerate(np.asarray(out["num_detections"]).astype(int))
    ]


def _detect_tiled(detector, image, tile, overlap, batch_size):
    """One image tile by tile → ``(boxes [n, 4] yxyx px, scores [n], labels [n])``."""
    out = predict_tiled(detector, image, tile=tile, overlap=overlap, batch_size=batch_size)
    return out["boxes"][0], out["confidence"][0], out["labels"][0]


def _unique_name(path, taken):
    """``<stem>.png``, with ``_2``, ``_3`` … when two inputs share a stem."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name, i = f"{stem}.png", 1
    while name in taken:
        i += 1
        name = f"{stem}_{i}.png"
    taken.add(name)
    return name


def _name(names, label):
    return names[int(label)] if names is not None else None
