"""TFDS detection datasets (``voc/2007``, ``voc/2012``, ``coco/2017``, ``rfcn_shapes``…)
→ common examples.

Any TFDS dataset with ``image`` and ``objects/{bbox, label}`` (``BBoxFeature``,
``ClassLabel``) works. ``objects/is_difficult`` (VOC) or ``objects/is_crowd`` (COCO)
becomes ``difficult``; ``image/filename`` (or ``image/id``) becomes ``image_id``.

Building VOC / COCO offline from archives you already have
------------------------------------------------------------
TFDS needs the original archives once; put them in one folder and pass it as
``manual_dir``::

    import tensorflow_datasets as tfds
    config = tfds.download.DownloadConfig(manual_dir="/data/archives")
    examples, names = rfcn_tf.data.load_examples(
        "voc/2007", "train", data_dir="/data/tfds", download=True, download_config=config)

For ``voc/2007`` the folder holds ``VOCtrainval_06-Nov-2007.tar`` and
``VOCtest_06-Nov-2007.tar``; for ``voc/2012`` ``VOCtrainval_11-May-2012.tar``; for
``coco/2017`` ``train2017.zip``, ``val2017.zip``, ``test2017.zip`` and
``annotations_trainval2017.zip`` (+ ``image_info_test2017.zip``). Checksums are still
verified. Once built, ``data_dir`` alone is enough (``download=False``, the default).
Extracted folders need no TFDS at all: pass the VOC folder or the COCO JSON to
``load_examples`` directly.
"""

import tensorflow as tf
import tensorflow_datasets as tfds

from rfcn_tf.data import shapes_builder  # noqa: F401  (registers rfcn_shapes with TFDS)
from rfcn_tf.data.validation import record_drops

ALWAYS_BUILT = ("rfcn_shapes",)  # generated locally, so "download" is always safe


def _adapter(spec, name):
    objects = spec.get("objects", {})
    if "image" not in spec or "bbox" not in objects or "label" not in objects:
        raise ValueError(
            f"TFDS dataset {name!r} is not a detection dataset: expected features "
            f"'image' and 'objects' with 'bbox' and 'label', got {spec}"
        )
    flag = next((k for k in ("is_difficult", "is_crowd") if k in objects), None)

    def to_common(ex):
        image = ex["image"]
        if "image/filename" in ex:
            image_id = ex["image/filename"]
        elif "image/id" in ex:
            image_id = tf.strings.as_string(ex["image/id"])
        else:
            image_id = tf.constant(f"{name} example")
        objects = ex["objects"]
        difficult = objects[flag] if flag else tf.zeros_like(objects["label"], tf.bool)
        # Real TFDS data gives every object feature the same length; tfds.testing.mock_data
        # does not. Objects past the shortest feature are dropped and recorded.
        lengths = tf.stack([tf.shape(objects["bbox"])[0], tf.size(objects["label"]), tf.size(difficult)])
        n = tf.reduce_min(lengths)
        record = record_drops(
            image_id + " (object features of unequal lengths)", tf.cast(tf.reduce_max(lengths) - n, tf.int64)
        )
        shape = tf.cast(tf.shape(image), tf.float32)
        with tf.control_dependencies([record]):
            boxes = objects["bbox"][:n] * tf.stack([shape[0], shape[1], shape[0], shape[1]])
        return {
            "image": image,
            "boxes": boxes,
            "labels": tf.cast(objects["label"][:n], tf.int32),
            "difficult": difficult[:n],
            "image_id": image_id,
        }

    return to_common


def load_tfds(
    name,
    split,
    data_dir=None,
    shuffle=False,
    seed=None,
    download=None,
    download_config=None,
    builder_kwargs=None,
):
    """TFDS dataset → ``(Dataset of common examples + image_id, class_names)``.

    download: run ``download_and_prepare`` (default: only for ``rfcn_shapes``, which is
    drawn locally). shuffle: shuffle the files and reshuffle each epoch (``seed`` fixes it).
    """
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    if download is None:
        download = builder.name in ALWAYS_BUILT
    if download:
        builder.download_and_prepare(download_config=download_config)
    read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config)
    except AssertionError as e:  # TFDS's "dataset not found in data_dir"
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not built in data_dir={data_dir!r} ({e}). Build it once with "
            "download=True, or offline from your archives with download_config="
            "tfds.download.DownloadConfig(manual_dir=...); see rfcn_tf.data.tfds_source."
        ) from None
    to_common = _adapter(ds.element_spec, name)
    class_names = list(builder.info.features["objects"]["label"].names)
    return ds.map(to_common, num_parallel_calls=tf.data.AUTOTUNE), class_names
