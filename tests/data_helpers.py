"""Small files for the data tests: images written with PIL, VOC XML, COCO JSON."""

import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image


def write_image(path, array, mode=None, **save_args):
    """Save a uint8 array ([H, W] or [H, W, C]) with PIL; the format follows the suffix."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path, **save_args)
    return path


def voc_xml(filename, size, objects):
    """objects: (name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    height, width = size
    parts = [
        f"<annotation><filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>"
            f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
            "</bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(root, images, splits=None):
    """images: {image_id: (filename, array, objects)}; splits: {name: [ids]}."""
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    for image_id, (filename, array, objects) in images.items():
        path = os.path.join(root, "JPEGImages", filename)
        if isinstance(array, bytes):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(array)
            size = (10, 10)
        else:
            write_image(path, array)
            size = np.asarray(array).shape[:2]
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
            f.write(voc_xml(filename, size, objects))
    for name, ids in (splits or {}).items():
        os.makedirs(os.path.join(root, "ImageSets", "Main"), exist_ok=True)
        with open(os.path.join(root, "ImageSets", "Main", name + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return root


def write_coco(json_path, images, categories, annotations):
    """images: [(id, file_name, array)] written beside the JSON; categories: [(id, name)];
    annotations: [(id, image_id, category_id, [x, y, w, h], iscrowd)]."""
    folder = os.path.dirname(json_path)
    os.makedirs(folder, exist_ok=True)
    data = {
        "images": [
            {"id": i, "file_name": f, "height": int(a.shape[0]), "width": int(a.shape[1])}
            for i, f, a in images
        ],
        "categories": [{"id": c, "name": n} for c, n in categories],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": b, "iscrowd": k, "area": b[2] * b[3]}
            for a, i, c, b, k in annotations
        ],
    }
    for _, file_name, array in images:
        write_image(os.path.join(folder, file_name), array)
    with open(json_path, "w") as f:
        json.dump(data, f)
    return json_path


def examples_dataset(examples):
    """A list of common-example dicts (numpy) → tf.data.Dataset, one element each."""

    def gen():
        yield from examples

    spec = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "labels": tf.TensorSpec([None], tf.int32),
        "difficult": tf.TensorSpec([None], tf.bool),
    }
    if "image_id" in examples[0]:
        spec["image_id"] = tf.TensorSpec([], tf.string)
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def example(height, width, boxes, labels=None, value=200, image_id=None):
    """A constant-colour common example with the given pixel boxes."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ex = {
        "image": np.full((height, width, 3), value, np.uint8),
        "boxes": boxes,
        "labels": np.asarray(labels if labels is not None else [0] * len(boxes), np.int32),
        "difficult": np.zeros(len(boxes), bool),
    }
    if image_id is not None:
        ex["image_id"] = image_id
    return ex
