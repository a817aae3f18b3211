"""Detection on image files: ``detections.json`` and one PNG with labelled boxes per image.

``detections.json`` is a list, one entry per input file in input order::

    {"file": "photos/cat.jpg", "width": 640, "height": 480, "output": "cat.png",
     "detections": [{"box": [ymin, xmin, ymax, xmax] (pixels), "score": 0.91,
                     "label": 0 (0-based class id), "label_name": "cat" or null}, ...]}

A file that cannot be read or decoded gets ``{"file": ..., "error": "why"}`` instead, and a
logged warning; the other files are still processed.
"""

import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from rfcn_tf.export import (CLASS_NAMES_HELP, check_class_names, decode_image, keras_detector,
                            load_detector, parse_class_names)
from rfcn_tf.inputs import pack_images
from rfcn_tf.visualize import draw_detections, save_png

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
RESULTS_FILE = "detections.json"
logger = logging.getLogger(__name__)


def predict_files(model_path_or_model, inputs, output_dir, score_threshold=0.3,
                  class_names=None, batch_size=4):
    """Detect objects in image files; write ``output_dir/detections.json`` and a PNG per
    image; return the list written to the JSON (module docstring).

    model_path_or_model: an RFCN model, or a ``.keras`` / SavedModel path (``load_detector``).
    inputs: a path or a list of paths; a folder contributes its files with an image
    extension (``IMAGE_EXTENSIONS``, sorted, not recursive), a file is always tried.
    class_names: overrides the model's names in the JSON and on the pictures.
    batch_size: images per model call (padded together with ``pack_images``).
    """
    if isinstance(model_path_or_model, keras.Model):
        detector, model_names = keras_detector(model_path_or_model)
    elif isinstance(model_path_or_model, (str, os.PathLike)):
        detector, model_names = load_detector(model_path_or_model)
    else:
        raise TypeError("predict_files needs an RFCN model or a model path; "
                        f"got {type(model_path_or_model).__name__}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    names = model_names
    if class_names is not None:
        names = (check_class_names(class_names, len(model_names)) if model_names is not None
                 else list(class_names))
    files = list_images(inputs)
    os.makedirs(output_dir, exist_ok=True)

    results, outputs = [], set()
    for start in range(0, len(files), int(batch_size)):
        loaded = [(path, _read(path)) for path in files[start:start + int(batch_size)]]
        good = [(path, image) for path, image in loaded if not isinstance(image, str)]
        detections = _detect(detector, [image for _, image in good]) if good else []
        by_path = dict(zip([path for path, _ in good], detections))
        for path, image in loaded:
            if isinstance(image, str):
                logger.warning("skipping %s: %s", path, image)
                results.append({"file": path, "error": image})
                continue
            boxes, scores, labels = by_path[path]
            keep = scores >= score_threshold
            output = _unique_name(path, outputs)
            drawn = draw_detections(image, boxes[keep], scores[keep], labels[keep],
                                    class_names=names)
            save_png(drawn, os.path.join(output_dir, output))
            results.append({
                "file": path, "width": int(image.shape[1]), "height": int(image.shape[0]),
                "output": output,
                "detections": [
                    {"box": [float(v) for v in box], "score": float(score), "label": int(label),
                     "label_name": _name(names, label)}
                    for box, score, label in zip(boxes[keep], scores[keep], labels[keep])],
            })
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
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(path, f)))
            if not found:
                raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def _read(path):
    """uint8 ``[H, W, 3]`` RGB, or the reason it could not be read (a str)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return decode_image(data).numpy()
    except (OSError, tf.errors.OpError) as error:
        message = getattr(error, "message", None) or str(error)
        return f"cannot read image: {message.strip()}"


def _detect(detector, images):
    """``[H_i, W_i, 3]`` images → per image ``(boxes [n, 4] yxyx px, scores [n], labels [n])``."""
    out = detector(pack_images(images))
    return [(out["boxes"][b, :n], out["confidence"][b, :n], out["labels"][b, :n])
            for b, n in enumerate(np.asarray(out["num_detections"]).astype(int))]


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


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help="a .keras file or a SavedModel directory (rfcn-tf export)")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--output-dir", default="predictions",
                        help=f"{RESULTS_FILE} and the pictures go here (default predictions/)")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--class-names", default=None, help=CLASS_NAMES_HELP)
    parser.add_argument("--batch-size", type=int, default=4)


def run(args):
    """Returns 1 when some input could not be read (after processing the rest), else None."""
    results = predict_files(args.model, args.inputs, args.output_dir,
                            score_threshold=args.score_threshold,
                            class_names=parse_class_names(args.class_names),
                            batch_size=args.batch_size)
    failed = [r["file"] for r in results if "error" in r]
    found = sum(len(r.get("detections", [])) for r in results)
    print(f"{len(results) - len(failed)} images, {found} detections → "
          f"{os.path.join(args.output_dir, RESULTS_FILE)}")
    if failed:
        print(f"could not read {len(failed)}: {', '.join(failed)}")
        return 1
    return None
