"""A Pascal-VOC folder → :class:`Records`.

Layout: ``root/Annotations/<id>.xml``, ``root/JPEGImages/<filename>`` and, optionally,
``root/ImageSets/Main/<split>.txt`` (one id per line). Class names are the sorted
``<name>`` values found in *all* the XML files, so every split of a folder maps names to
the same indices. VOC pixel indices are 1-based and inclusive; boxes become edge
convention ``[ymin - 1, xmin - 1, ymax, xmax]``. ``<difficult>1</difficult>`` →
``difficult``; a missing ``<difficult>`` means 0.
"""

import os
import xml.etree.ElementTree as ET

import numpy as np

from rfcn_tf.data.folder_records import Records


def _text(element, tag, xml_path, default=None):
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise ValueError(f"{xml_path}: missing <{tag}> in <{element.tag}>")
    return child.text.strip()


def _parse(xml_path):
    """→ (filename or None, (height, width) or None, [(name, [ymin, xmin, ymax, xmax], difficult)])."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml_path}: not a valid XML file ({e})") from None
    filename = _text(root, "filename", xml_path, default="") or None
    size = root.find("size")
    dims = None
    if size is not None and size.find("height") is not None and size.find("width") is not None:
        dims = (int(float(_text(size, "height", xml_path))), int(float(_text(size, "width", xml_path))))
        if dims[0] <= 0 or dims[1] <= 0:
            dims = None  # some tools write 0 × 0; the decoded image's size is used instead
    objects = []
    for obj in root.findall("object"):
        name = _text(obj, "name", xml_path)
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{xml_path}: object {name!r} has no <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (
                float(_text(box, t, xml_path)) for t in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError as e:
            raise ValueError(f"{xml_path}: object {name!r}: bad <bndbox> ({e})") from None
        difficult = _text(obj, "difficult", xml_path, default="0") == "1"
        # Sort before the 1-based → edge shift, which treats min and max differently.
        (xmin, xmax), (ymin, ymax) = sorted((xmin, xmax)), sorted((ymin, ymax))
        objects.append((name, [ymin - 1.0, xmin - 1.0, ymax, xmax], difficult))
    return filename, dims, objects


def _split_ids(root, split):
    split_dir = os.path.join(root, "ImageSets", "Main")
    path = os.path.join(split_dir, f"{split}.txt")
    if not os.path.isfile(path):
        available = (
            sorted(f[:-4] for f in os.listdir(split_dir) if f.endswith(".txt"))
            if os.path.isdir(split_dir)
            else []
        )
        raise FileNotFoundError(
            f"VOC folder {root}: no split file {path}; available splits: {available or 'none'} "
            "(pass split=None to read every annotation)"
        )
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def read_voc_folder(root, split=None):
    """Read a VOC folder. split: a name in ``ImageSets/Main`` or None for every XML.

    Returns ``(Records, class_names)``. Raises ValueError / FileNotFoundError naming the
    file for a malformed XML, a missing image or an unknown split.
    """
    annotations = os.path.join(root, "Annotations")
    if not os.path.isdir(annotations):
        raise FileNotFoundError(f"{root} is not a VOC folder: {annotations} does not exist")
    all_ids = sorted(f[:-4] for f in os.listdir(annotations) if f.endswith(".xml"))
    parsed = {i: _parse(os.path.join(annotations, i + ".xml")) for i in all_ids}
    class_names = sorted({name for _, _, objects in parsed.values() for name, _, _ in objects})
    index = {name: i for i, name in enumerate(class_names)}

    ids = all_ids if split is None else _split_ids(root, split)
    records = Records([], [], [], [], [], [])
    for image_id in ids:
        if image_id not in parsed:
            raise FileNotFoundError(
                f"VOC folder {root}: split {split!r} lists {image_id!r} "
                f"but {os.path.join(annotations, image_id + '.xml')} does not exist"
            )
        filename, dims, objects = parsed[image_id]
        path = os.path.join(root, "JPEGImages", filename or image_id + ".jpg")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{os.path.join(annotations, image_id + '.xml')}: image {path} does not exist"
            )
        records.paths.append(path)
        records.image_ids.append(image_id)
        records.sizes.append(dims)
        records.boxes.append(np.array([b for _, b, _ in objects], np.float32).reshape(-1, 4))
        records.labels.append(np.array([index[n] for n, _, _ in objects], np.int32))
        records.difficult.append(np.array([d for _, _, d in objects], bool))
    return records, class_names
