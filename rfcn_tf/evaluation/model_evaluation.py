"""Running a detector over a validation dataset and scoring it.

Dataset batches are ``(inputs, targets)``: ``inputs = {"images": [B, H, W, 3],
"image_sizes": [B, 2]}``, ``targets = {"boxes": [B, N, 4] yxyx padded with -1, "labels":
[B, N] padded with -1, "difficult": [B, N] bool (optional), "scales": [B] (optional;
resized = original × scale)}``. The detector maps ``inputs`` to ``{"boxes": [B, M, 4],
"confidence": [B, M], "labels": [B, M], "num_detections": [B]}``; entries past
``num_detections[b]`` are padding.
"""

from collections.abc import Mapping

import keras
import numpy as np

from rfcn_tf.evaluation.metrics import evaluate_detections
from rfcn_tf.inputs import from_model_format
from rfcn_tf.progress import Progress

OUTPUT_KEYS = ("boxes", "confidence", "labels", "num_detections")


def evaluate_model(
    model,
    dataset,
    metric="voc07",
    num_classes=None,
    class_names=None,
    iou_threshold=0.5,
    original_scale=False,
    steps=None,
    verbose=0,
    bounding_box_format=None,
):
    """Detect on every batch of ``dataset`` and return ``evaluate_detections``' result.

    model: a ``keras.Model`` (run with ``predict_on_batch``, so a custom
    ``predict_step`` applies) or any callable ``fn(inputs) -> detection dict``, such as a
    loaded SavedModel's function. Boxes are compared in the model's input (resized)
    pixels; ``original_scale=True`` divides both sides by ``targets["scales"]``.
    steps: evaluate at most this many batches. verbose: 1 shows the progress
    (``rfcn_tf.progress``: a bar on a terminal, a line per tenth of the batches otherwise).
    bounding_box_format: of targets and detections (module doc); None → the model's.
    """
    detections, ground_truth = collect_detections(
        model,
        dataset,
        original_scale=original_scale,
        steps=steps,
        verbose=verbose,
        bounding_box_format=bounding_box_format,
    )
    return evaluate_detections(
        detections,
        ground_truth,
        metric=metric,
        num_classes=num_classes,
        iou_threshold=iou_threshold,
        class_names=class_names,
    )


def collect_detections(
    model, dataset, original_scale=False, steps=None, verbose=0, bounding_box_format=None, on_batch=None
):
    """Per-image ``(detections, ground_truth)`` lists for ``evaluate_detections``, boxes yxyx.

    on_batch: called as ``on_batch(inputs, targets)`` with each batch evaluated (e.g. to
    keep a few images for pictures, in the order of the lists)."""
    if bounding_box_format is None:
        config = getattr(model, "config", None)
        bounding_box_format = getattr(config, "bounding_box_format", "yxyx")
    if isinstance(model, keras.Model):
        predict = model.predict_on_batch
    elif callable(model):
        predict = model
    else:
        raise TypeError(f"model must be a keras.Model or a callable, got {type(model).__name__}")
    progress = Progress(_num_batches(dataset, steps), "evaluate", "batches", verbose=verbose)
    detections, ground_truth = [], []
    step = 0
    for batch in dataset:
        if steps is not None and step >= steps:
            break
        inputs, targets = _split_batch(batch, step)
        if on_batch is not None:
            on_batch(inputs, targets)
        outputs = _numpy_dict(predict(inputs), OUTPUT_KEYS, "the model's output")
        targets = _numpy_dict(targets, ("boxes", "labels"), f"targets of batch {step}")
        for part in (outputs, targets):
            part["boxes"] = np.asarray(
                from_model_format(part["boxes"].astype(np.float32), bounding_box_format)
            )
        scales = _scales(targets, original_scale, step)
        for b in range(len(targets["labels"])):
            detections.append(_image_detections(outputs, b, scales[b]))
            ground_truth.append(_image_ground_truth(targets, b, scales[b]))
        step += 1
        progress.update(step)
    progress.finish()
    return detections, ground_truth


def _num_batches(dataset, steps):
    """Batch count for the progress bar, or None when unknown."""
    if hasattr(dataset, "cardinality"):
        count = int(dataset.cardinality())
        count = count if count >= 0 else None  # INFINITE or UNKNOWN
    elif hasattr(dataset, "__len__"):
        count = len(dataset)
    else:
        count = None
    if steps is not None:
        count = steps if count is None else min(count, steps)
    return count


def _split_batch(batch, step):
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"batch {step} of the dataset must be (inputs, targets), got {type(batch).__name__}")
    inputs, targets = batch
    if not isinstance(inputs, Mapping) or "images" not in inputs:
        raise ValueError(f"batch {step}: inputs must be a dict with 'images' (and 'image_sizes')")
    return inputs, targets


def _numpy_dict(value, required, what):
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict with keys {required}, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ValueError(f"{what} is missing {missing}; expected keys {required}")
    return {k: np.asarray(v) for k, v in value.items()}


def _scales(targets, original_scale, step):
    """Per-image divisor for boxes: ``targets["scales"]``, or 1 in resized pixels."""
    count = len(targets["labels"])
    if not original_scale:
        return np.ones(count)
    if "scales" not in targets:
        raise ValueError(f"original_scale=True needs targets['scales'] [B], missing in batch {step}")
    scales = targets["scales"].astype(np.float64).reshape(-1)
    if scales.shape != (count,) or not np.all(scales > 0):
        raise ValueError(
            f"targets['scales'] of batch {step} must be {count} positive numbers, got {targets['scales']}"
        )
    return scales


def _image_detections(outputs, b, scale):
    n = int(outputs["num_detections"][b])
    return {
        "boxes": outputs["boxes"][b, :n].astype(np.float64) / scale,
        "scores": outputs["confidence"][b, :n],
        "labels": outputs["labels"][b, :n],
    }


def _image_ground_truth(targets, b, scale):
    real = targets["labels"][b] >= 0
    return {
        "boxes": targets["boxes"][b][real].astype(np.float64) / scale,
        "labels": targets["labels"][b][real],
        "difficult": targets["difficult"][b][real] if "difficult" in targets else None,
    }
