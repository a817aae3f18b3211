"""``load_examples``: one entry point for every kind of source."""

import os

import tensorflow_datasets as tfds

from rfcn_tf.data.folder_records import clean_records, is_path, read_folder
from rfcn_tf.data.records import records_to_examples
from rfcn_tf.data.tfds_source import load_tfds
from rfcn_tf.data.validation import validate_examples


def load_examples(
    source,
    split=None,
    data_dir=None,
    *,
    image_dir=None,
    shuffle=False,
    seed=None,
    download=None,
    download_config=None,
    builder_kwargs=None,
):
    """Any source → ``(tf.data.Dataset of common examples, class_names)``.

    source:
      - ``"rfcn_shapes"`` / ``"rfcn_shapes/tiny"`` (built into ``data_dir`` on first use),
        or any TFDS detection dataset name such as ``"voc/2007"``, ``"coco/2017"``
        (``split`` e.g. ``"train"``, ``"validation[:10%]"``; see ``tfds_source`` for
        ``download`` / ``download_config`` / ``builder_kwargs``);
      - a Pascal-VOC folder (``split`` names ``ImageSets/Main/<split>.txt``; None = all);
      - a COCO folder with ``annotations/instances_<split>.json`` and ``<split>/`` images;
      - a COCO JSON file (it is one split: ``split`` is ignored; images in
        ``image_dir``, default the JSON's folder).

    Each element: ``{"image": uint8 [H, W, 3], "boxes": float32 [N, 4] yxyx pixels,
    "labels": int32 [N] in 0..C−1, "difficult": bool [N], "image_id": string}``, already
    validated (``rfcn_tf.data.validation``). shuffle (for training; ``seed`` fixes it):
    a folder source reshuffles its whole file list each epoch before reading; a TFDS
    source shuffles its record files (``make_pipeline(training=True)`` mixes further).
    """
    source = os.fspath(source)
    if is_path(source):
        path = os.path.expanduser(source)
        records, class_names = read_folder(path, split, image_dir)
        records = clean_records(records, path)
        examples = records_to_examples(records, shuffle=shuffle, seed=seed)
    else:
        if image_dir is not None:
            raise ValueError("image_dir applies to COCO JSON sources only, not to TFDS datasets")
        if split is None:
            raise ValueError(f"TFDS dataset {source!r} needs a split, e.g. 'train'")
        try:
            examples, class_names = load_tfds(
                source,
                split,
                data_dir=data_dir,
                shuffle=shuffle,
                seed=seed,
                download=download,
                download_config=download_config,
                builder_kwargs=builder_kwargs,
            )
        except tfds.core.DatasetNotFoundError as e:
            raise ValueError(
                f"{source!r} is neither an existing file or folder nor a registered TFDS "
                f"dataset ({str(e).splitlines()[0]})"
            ) from None
    if not class_names:
        raise ValueError(f"{source}: no class names found (no labelled objects in the annotations)")
    return validate_examples(examples, len(class_names)), class_names
