"""The ``rfcn_shapes`` TFDS dataset: synthetic shapes drawn offline in under a minute.

Importing this module registers the builder. Configs: ``rfcn_shapes`` (= ``default``:
192 px, 4000 / 200 / 200 train / validation / test images) and ``rfcn_shapes/tiny``
(128 px, 16 / 8 / 8, for tests). Any other size or count: pass your own
``RfcnShapesConfig`` with a new ``name``, e.g.
``tfds.builder("rfcn_shapes", config=RfcnShapesConfig(name="big", image_size=256,
num_train=5000))`` — the name keys the cache in ``data_dir``.

Example ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split_index,
i])``, so a build is identical for identical configs. Every ``empty_every``-th image
(index 0 included) has no objects; the others have 1..``max_objects``.
Features: ``image`` uint8 [S, S, 3] (PNG), ``image/filename`` (``"<split>_<i>"``),
``objects/bbox`` (``BBoxFeature``: normalised yxyx, edge convention, tight on the
visible pixels) and ``objects/label`` (``ClassLabel`` over ``CLASS_NAMES``).
"""

import dataclasses
import io

import tensorflow_datasets as tfds
from PIL import Image

from rfcn_tf.data.shapes import CLASS_NAMES, CONFIGS, SPLITS, render_split_example


@dataclasses.dataclass
class RfcnShapesConfig(tfds.core.BuilderConfig):
    image_size: int = CONFIGS["default"]["image_size"]
    num_train: int = CONFIGS["default"]["num_train"]
    num_validation: int = CONFIGS["default"]["num_validation"]
    num_test: int = CONFIGS["default"]["num_test"]
    max_objects: int = CONFIGS["default"]["max_objects"]
    empty_every: int = CONFIGS["default"]["empty_every"]
    max_iou: float = CONFIGS["default"]["max_iou"]
    seed: int = CONFIGS["default"]["seed"]


class RfcnShapes(tfds.core.GeneratorBasedBuilder):
    """Circles, squares, triangles, stars and rings on textured backgrounds."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Smallest objects 20 px instead of 12 (at 192 px).",
        "1.2.0": "4000 train images instead of 1000 (validation and test unchanged).",
    }
    BUILDER_CONFIGS = [
        RfcnShapesConfig(name="default", description="192 px, 4000/200/200 images."),
        RfcnShapesConfig(name="tiny", description="128 px, 16/8/8 images, for tests.", **CONFIGS["tiny"]),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "image/filename": tfds.features.Text(),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                        }
                    ),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        counts = (
            self.builder_config.num_train,
            self.builder_config.num_validation,
            self.builder_config.num_test,
        )
        return {
            name: self._generate_examples(index, name, count)
            for index, (name, count) in enumerate(zip(SPLITS, counts))
        }

    def _generate_examples(self, split_index, split_name, count):
        config = self.builder_config
        for i in range(count):
            example = render_split_example(config, split_index, i)
            size = float(config.image_size)
            key = f"{split_name}_{i:06d}"
            yield (
                key,
                {
                    "image": _png_bytes(example["image"]),
                    "image/filename": key,
                    "objects": {
                        "bbox": (example["boxes"] / size).reshape(-1, 4),
                        "label": example["labels"],
                    },
                },
            )


def _png_bytes(image):
    # PIL at a low compression level is several times faster than TFDS's own encoder
    # on these noisy images, and they hardly compress anyway.
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
