"""Validation of detections and ground truth into plain numpy arrays.

Per image, detections are ``{"boxes": [N, 4], "scores": [N], "labels": [N]}`` and ground
truth is ``{"boxes": [G, 4], "labels": [G], "difficult": [G] (optional)}``; boxes are
absolute-pixel ``yxyx``, labels are class ids ``0..num_classes-1``. Lists, numpy arrays
and eager tensors are accepted; the output is float64 boxes/scores, int64 labels and
bool ``difficult``.
"""

from collections.abc import Mapping, Sequence

import numpy as np


def resolve_classes(num_classes, class_names, labels):
    """Number of classes and the key of each class in results.

    num_classes: int or None; class_names: sequence of str or None; labels: the label
    arrays seen, used only when neither of the other two is given (max label + 1).
    Returns ``(num_classes, keys)`` where ``keys[c]`` is ``class_names[c]`` or ``c``.
    """
    if isinstance(class_names, str):
        raise TypeError(f"class_names must be a list of names, got the string {class_names!r}")
    if class_names is not None:
        class_names = list(class_names)
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names has duplicates: {class_names}")
        if num_classes is None:
            num_classes = len(class_names)
        elif len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is "
                f"{num_classes}; expected one name per class"
            )
    if num_classes is None:
        num_classes = max((int(l.max()) + 1 for l in labels if l.size), default=0)
    if int(num_classes) != num_classes or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    num_classes = int(num_classes)
    keys = class_names if class_names is not None else list(range(num_classes))
    return num_classes, keys


def validate(detections, ground_truth):
    """Both per-image lists → lists of dicts of numpy arrays (labels not range-checked).

    Raises ValueError/TypeError naming the image and field that is wrong.
    """
    for name, value in (("detections", detections), ("ground_truth", ground_truth)):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list with one dict per image, got {type(value).__name__}")
    if not ground_truth:
        raise ValueError("ground_truth is empty; expected at least one image")
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"detections has {len(detections)} images but ground_truth has "
            f"{len(ground_truth)}; expected one entry per image in both"
        )
    dets = [_detection(d, i) for i, d in enumerate(detections)]
    gts = [_ground_truth(g, i) for i, g in enumerate(ground_truth)]
    return dets, gts


def check_label_range(items, num_classes, what):
    """Raise if any label in ``items`` (validated dicts) is outside ``0..num_classes-1``."""
    for i, item in enumerate(items):
        bad = item["labels"][(item["labels"] < 0) | (item["labels"] >= num_classes)]
        if bad.size:
            raise ValueError(
                f"{what}[{i}]['labels'] has {bad[0]}; expected class ids in "
                f"0..{num_classes - 1} (num_classes={num_classes})"
            )


def _detection(item, index):
    where = f"detections[{index}]"
    _check_keys(item, ("boxes", "scores", "labels"), where)
    boxes = _boxes(item["boxes"], where)
    scores = _vector(item["scores"], len(boxes), f"{where}['scores']", np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}['scores'] has NaN or infinite values")
    labels = _labels(item["labels"], len(boxes), f"{where}['labels']")
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _ground_truth(item, index):
    where = f"ground_truth[{index}]"
    _check_keys(item, ("boxes", "labels"), where)
    boxes = _boxes(item["boxes"], where)
    labels = _labels(item["labels"], len(boxes), f"{where}['labels']")
    if item.get("difficult") is None:
        difficult = np.zeros(len(boxes), bool)
    else:
        difficult = _vector(item["difficult"], len(boxes), f"{where}['difficult']", None)
        if difficult.dtype != bool and not np.isin(difficult, (0, 1)).all():
            raise ValueError(f"{where}['difficult'] must be booleans (or 0/1)")
        difficult = difficult.astype(bool)
    return {"boxes": boxes, "labels": labels, "difficult": difficult}


def _check_keys(item, keys, where):
    if not isinstance(item, Mapping):
        raise TypeError(f"{where} must be a dict with keys {keys}, got {type(item).__name__}")
    missing = [k for k in keys if k not in item]
    if missing:
        raise ValueError(f"{where} is missing {missing}; expected keys {keys}")


def _boxes(value, where):
    boxes = np.asarray(value, np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] has shape {boxes.shape}; expected [N, 4] yxyx boxes")
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{where}['boxes'] has NaN or infinite values")
    if np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ValueError(
            f"{where}['boxes'] has a box with ymax < ymin or xmax < xmin; expected "
            "[ymin, xmin, ymax, xmax] in absolute pixels"
        )
    return boxes


def _vector(value, length, where, dtype):
    array = np.asarray(value, dtype)
    if array.size == 0:
        array = array.reshape(0)
    if array.shape != (length,):
        raise ValueError(f"{where} has shape {array.shape}; expected [{length}] (one per box)")
    return array


def _labels(value, length, where):
    labels = _vector(value, length, where, None)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{where} must hold integer class ids, got dtype {labels.dtype}")
    return labels.astype(np.int64)
