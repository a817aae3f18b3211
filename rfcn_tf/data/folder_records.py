"""What the folder readers produce, without TensorFlow: :class:`Records`, their box cleaning,
and :func:`read_folder` (a VOC folder, a COCO folder or a COCO JSON file → records).

Both data paths start here: ``records.records_to_examples`` (``tf.data``) and
``py_dataset.DetectionDataset`` (numpy and Pillow).
"""

import dataclasses
import logging
import os

import numpy as np

logger = logging.getLogger("rfcn_tf.data")


@dataclasses.dataclass
class Records:
    """One entry per image. Boxes float32 [n, 4] absolute yxyx pixels (edge convention)."""

    paths: list[str]
    image_ids: list[str]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    difficult: list[np.ndarray]
    # (height, width) the annotation declares, or None; used to clip before decoding.
    sizes: list[tuple[int, int] | None]

    def __len__(self):
        return len(self.paths)


def clean_box_array(boxes, height, width):
    """numpy twin of ``validation.clean_boxes`` (the graph's): sort, clip, test.

    boxes float32 ``[..., 4]`` yxyx pixels; height/width broadcast against ``boxes[..., 0]``.
    Returns ``(boxes float32, keep bool [...])``: keep = positive height and width after
    clipping (NaN boxes are not kept).
    """
    boxes = np.asarray(boxes, np.float32)
    height, width = np.float32(height), np.float32(width)
    y0, x0, y1, x1 = np.moveaxis(boxes, -1, 0)
    ymin = np.clip(np.minimum(y0, y1), 0.0, height)
    ymax = np.clip(np.maximum(y0, y1), 0.0, height)
    xmin = np.clip(np.minimum(x0, x1), 0.0, width)
    xmax = np.clip(np.maximum(x0, x1), 0.0, width)
    keep = (ymax - ymin > 0.0) & (xmax - xmin > 0.0)
    return np.stack([ymin, xmin, ymax, xmax], axis=-1).astype(np.float32), keep


def clean_records(records, source):
    """Sort and clip every box to its declared image size; drop and log the empty ones."""
    counts = np.array([len(b) for b in records.boxes], np.int64)
    if counts.sum() == 0:
        return records
    boxes = np.concatenate(records.boxes).astype(np.float32)
    sizes = np.array([s if s is not None else (np.inf, np.inf) for s in records.sizes], np.float32)
    limits = np.repeat(sizes, counts, axis=0)
    boxes, keep = clean_box_array(boxes, limits[:, 0], limits[:, 1])
    splits = np.cumsum(counts)[:-1]
    per_image_keep = np.split(keep, splits)
    per_image_boxes = np.split(boxes, splits)
    dropped = [
        (image_id, int((~k).sum())) for image_id, k in zip(records.image_ids, per_image_keep) if not k.all()
    ]
    if dropped:
        total = sum(n for _, n in dropped)
        names = ", ".join(image_id for image_id, _ in dropped[:10]) + (", …" if len(dropped) > 10 else "")
        logger.warning(
            "%s: %d empty boxes dropped (zero area after sorting and clipping) in %d images: %s",
            source,
            total,
            len(dropped),
            names,
        )
    return dataclasses.replace(
        records,
        boxes=[b[k] for b, k in zip(per_image_boxes, per_image_keep)],
        labels=[lab[k] for lab, k in zip(records.labels, per_image_keep)],
        difficult=[d[k] for d, k in zip(records.difficult, per_image_keep)],
    )


def read_folder(source, split, image_dir):
    """A VOC folder, a COCO folder (``annotations/instances_<split>.json``) or a COCO JSON
    → ``(Records, class_names)``."""
    from rfcn_tf.data.coco_json import read_coco_json  # the readers build Records
    from rfcn_tf.data.voc_folder import read_voc_folder

    if not os.path.exists(source):
        raise FileNotFoundError(f"no such file or folder: {source}")
    if os.path.isdir(source):
        if os.path.isdir(os.path.join(source, "Annotations")):
            return read_voc_folder(source, split)
        json_path = os.path.join(source, "annotations", f"instances_{split}.json")
        if os.path.isfile(json_path):
            return read_coco_json(json_path, image_dir or os.path.join(source, split))
        raise FileNotFoundError(
            f"{source} is neither a VOC folder (no Annotations/) nor a COCO folder "
            f"(no annotations/instances_{split}.json)"
        )
    if split is not None:
        logger.info("%s: a COCO JSON file holds one split; split=%r is ignored", source, split)
    return read_coco_json(source, image_dir)


def is_path(source):
    """Whether ``source`` names a file or folder rather than a dataset name."""
    return os.path.exists(source) or source.endswith(".json") or source.startswith(("/", ".", "~"))
