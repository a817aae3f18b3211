"""A COCO instances JSON + image folder → :class:`Records`.

Class names: the ``categories`` sorted by ``id``, mapped to 0..C−1 (COCO's 80 ids run
1..90 with gaps). Boxes ``[x, y, w, h]`` → yxyx ``[y, x, y + h, x + w]``; ``iscrowd`` →
``difficult`` (evaluation ignores both). Images with no annotations are kept (N = 0).
"""

import json
import os

import numpy as np
from keras.utils import bounding_boxes

from rfcn_tf.data.folder_records import Records


def read_coco_json(json_path, image_dir=None):
    """Read ``json_path``; images are ``image_dir/<file_name>`` (default: the JSON's folder).

    Returns ``(Records, class_names)``. An annotation whose ``category_id`` or
    ``image_id`` is unknown, or a missing image file, raises an error naming it.
    """
    with open(json_path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path}: not a valid JSON file ({e})") from None
    for key in ("images", "categories"):
        if key not in data:
            raise ValueError(f"{json_path}: no {key!r} list; expected a COCO instances file")
    if image_dir is None:
        image_dir = os.path.dirname(os.path.abspath(json_path))

    categories = sorted(data["categories"], key=lambda c: c["id"])
    class_names = [c["name"] for c in categories]
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    images = {img["id"]: img for img in data["images"]}
    annotations = data.get("annotations", [])
    for ann in annotations:
        if ann["image_id"] not in images:
            raise ValueError(
                f"{json_path}: annotation {ann.get('id')} refers to image_id "
                f"{ann['image_id']}, which is not in 'images'"
            )
        if ann["category_id"] not in label_of:
            image = images[ann["image_id"]]["file_name"]
            raise ValueError(
                f"{json_path}: annotation {ann.get('id')} of image {image}: category_id "
                f"{ann['category_id']} is not among the category ids {sorted(label_of)}"
            )
    xywh = np.array([ann["bbox"] for ann in annotations], np.float32).reshape(-1, 4)
    boxes = np.asarray(bounding_boxes.convert_format(xywh, source="xywh", target="yxyx"))
    labels = np.array([label_of[ann["category_id"]] for ann in annotations], np.int32)
    crowd = np.array([bool(ann.get("iscrowd", 0)) for ann in annotations], bool)
    rows_of = {image_id: [] for image_id in images}
    for row, ann in enumerate(annotations):
        rows_of[ann["image_id"]].append(row)

    records = Records([], [], [], [], [], [])
    for image_id, image in images.items():
        path = os.path.join(image_dir, image["file_name"])
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{json_path}: image {image['file_name']} not found at {path} "
                "(pass image_dir= the folder holding the images)"
            )
        rows = np.array(rows_of[image_id], np.int64)
        records.paths.append(path)
        records.image_ids.append(str(image["file_name"]))
        size = (image.get("height"), image.get("width"))
        records.sizes.append(size if all(isinstance(s, int) and s > 0 for s in size) else None)
        records.boxes.append(boxes[rows])
        records.labels.append(labels[rows])
        records.difficult.append(crowd[rows])
    return records, class_names
