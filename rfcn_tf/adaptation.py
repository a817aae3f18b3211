"""A trained model adapted to a new site's look without labels: its BatchNorm statistics
re-estimated on unlabelled photos of that site (AdaBN, Li et al., "Revisiting Batch
Normalization For Practical Domain Adaptation", 2016).

A BatchNorm layer normalises with the mean and variance it saw in training. Photos of
another site (other palette, lighting, texture) shift those statistics, and every layer
after it sees inputs it was not trained on. ``adapt_batchnorm`` runs the target photos
through the model in training mode, so each BatchNorm normalises with the statistics of
what it now receives, and keeps the pixel-weighted mean of them as its moving mean and
variance. Nothing else changes: no weight is trained and no label is read.

The statistics are exact over the images given: per batch, each layer's batch mean ``m``
and variance ``v`` (biased, as Keras computes them) are pooled into ``E[x]`` and
``E[x²] = v + m²``, weighted by the batch's pixels at the model's scale. The result is a
function of the images, their order and ``batch_size`` (each batch is normalised by its
own statistics on its way through), so the same call gives the same model.
"""

import logging
import numbers

import keras
import numpy as np

from rfcn_tf.export.files import default_input_size
from rfcn_tf.image_scale import inference_side, static_resized_size
from rfcn_tf.tiling import tile_grid, tile_pair

logger = logging.getLogger(__name__)


def batchnorm_layers(model):
    """Every ``keras.layers.BatchNormalization`` in ``model`` and its nested models, each once."""
    found, seen = [], set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for sub in getattr(layer, "layers", ()):
            walk(sub)

    walk(model)
    return found


def adapt_batchnorm(model, images, tile=None, batch_size=8, max_pixels=None, verbose=0):
    """Re-estimate every BatchNorm's moving mean and variance on unlabelled ``images`` of the
    domain the model will detect in (module docstring); ``model`` is changed in place.

    model: an ``RFCN`` (either head; BatchNorms frozen for fine-tuning are adapted too).
    images: image files and/or folders (as ``rfcn-tf predict`` takes them), or images
    ``[H, W, 3]`` RGB 0..255 (a list, or one ``[N, H, W, 3]`` array).
    tile: None: each image resized to the model's scale, as ``predict`` sees it; an int,
    ``(height, width)`` or ``"auto"`` (the model's scale): each image cut into windows of
    that size at its own resolution, as ``predict(..., tile=)`` sees it — use the tile you
    will predict with.
    batch_size: images (windows) per forward pass, of one size each.
    max_pixels: refuse image files declaring more pixels (``predict_files``'s default).
    verbose: 1 shows the progress in images.

    Returns ``{"images": n, "windows": m, "batchnorms": k, "skipped": [unreadable files]}``.
    Raises ValueError when the model has no BatchNorm or no image could be read; on any
    error the model keeps the statistics it had.
    """
    from rfcn_tf.progress import Progress

    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no BatchNormalization layer: nothing to adapt")
    if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    config = model.config
    if tile is not None:
        tile = tile_pair(default_input_size(config) if tile == "auto" else tile)
    sources = _image_sources(images)
    side = inference_side(config.min_side)

    saved = [(bn.trainable, bn.momentum, _numpy(bn.moving_mean), _numpy(bn.moving_variance)) for bn in layers]
    sums = [[0.0, 0.0] for _ in layers]  # per layer: Σ w·m, Σ w·(v + m²)
    total = 0.0
    counts = {"images": 0, "windows": 0, "batchnorms": len(layers), "skipped": []}
    progress = Progress(len(sources), "adapt", "images", verbose=verbose)
    try:
        for bn in layers:
            bn.trainable = True  # a frozen BatchNorm runs in inference mode
            bn.momentum = 0.0  # the moving statistics become the batch's, read after each pass
        for batch in _batches(sources, tile, batch_size, config, max_pixels, counts, progress):
            model(batch, training=True)
            height, width = static_resized_size(batch.shape[1:3], side, config.max_side)
            weight = float(len(batch) * height * width)
            total += weight
            for bn, acc in zip(layers, sums):
                mean = _numpy(bn.moving_mean).astype(np.float64)
                var = _numpy(bn.moving_variance).astype(np.float64)
                acc[0] = acc[0] + weight * mean
                acc[1] = acc[1] + weight * (var + mean**2)
        progress.finish()
        if total == 0.0:
            skipped = len(counts["skipped"])
            raise ValueError(f"no image could be read to adapt the model on ({skipped} skipped)")
        for bn, (first, second) in zip(layers, sums):
            mean = first / total
            bn.moving_mean.assign(mean.astype("float32"))
            bn.moving_variance.assign(np.maximum(second / total - mean**2, 0.0).astype("float32"))
    except BaseException:
        for bn, (_, _, mean, var) in zip(layers, saved):
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(var)
        raise
    finally:
        for bn, (trainable, momentum, _, _) in zip(layers, saved):
            bn.trainable = trainable
            bn.momentum = momentum
    return counts


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _image_sources(images):
    """``images`` → a list of file paths or ``[H, W, 3]`` numpy arrays (checked)."""
    from rfcn_tf.predict import list_images

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        return list_images(images)
    images = list(images)
    if not images:
        raise ValueError("no images given to adapt the model on")
    if all(isinstance(image, str) or hasattr(image, "__fspath__") for image in images):
        return list_images(images)
    checked = []
    for index, image in enumerate(images):
        image = np.asarray(keras.ops.convert_to_numpy(image))
        if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index} must be [height, width, 3] RGB; got shape {image.shape}")
        if image.dtype.kind not in "uif":
            raise ValueError(f"image {index} must be uint8 or float in 0..255; got dtype {image.dtype}")
        checked.append(image)
    return checked


def _batches(sources, tile, batch_size, config, max_pixels, counts, progress):
    """float32 batches ``[b, h, w, 3]`` of one size each: the images (resized as the model
    would, when read from files) or their windows, in order."""
    from rfcn_tf.data.py_dataset import MAX_IMAGE_PIXELS
    from rfcn_tf.predict import TILED_MAX_PIXELS, model_target_size, read_or_reason

    if max_pixels is None:
        max_pixels = MAX_IMAGE_PIXELS if tile is None else TILED_MAX_PIXELS
    size_fn = None if tile is not None else model_target_size(config.min_side, config.max_side)
    pending = []
    for done, source in enumerate(sources, 1):
        if isinstance(source, np.ndarray):
            image = source
        else:
            read = read_or_reason(source, size_fn, max_pixels)
            if isinstance(read, str):
                logger.warning("skipping %s: %s", source, read)
                counts["skipped"].append(source)
                progress.update(done)
                continue
            image = read[0]
        counts["images"] += 1
        if tile is None:
            windows = [image]
        else:
            grid = tile_grid(*image.shape[:2], tile, overlap=0.0)
            windows = [image[y0:y1, x0:x1] for y0, x0, y1, x1 in grid]
        for window in windows:
            counts["windows"] += 1
            if pending and (len(pending) == batch_size or pending[0].shape != window.shape):
                yield np.stack(pending).astype(np.float32)
                pending = []
            pending.append(window)
        progress.update(done)
    if pending:
        yield np.stack(pending).astype(np.float32)
