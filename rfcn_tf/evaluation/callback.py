"""``MeanAveragePrecisionCallback``: detection mAP in the epoch logs during ``fit``, and
optionally pictures of it in TensorBoard."""

import keras
import numpy as np

from rfcn_tf import _optional
from rfcn_tf.evaluation.metrics import METRICS, evaluate_detections, precision_recall_curves
from rfcn_tf.evaluation.model_evaluation import collect_detections
from rfcn_tf.evaluation.tensorboard import side_by_side, write_evaluation


class MeanAveragePrecisionCallback(keras.callbacks.Callback):
    """Every ``every_n_epochs`` epochs, evaluate the model and write mAP into ``logs``.

    Adds ``val_mAP``, ``val_AP/<class>`` per class (NaN for a class without ground
    truth) when ``log_per_class``, and for ``metric="coco"`` the COCO summary as
    ``val_AP50``, ``val_AP75``, ``val_AR100`` …. Epochs in between get no such keys, so
    the History lists them only for evaluated epochs.

    Keras calls callbacks in list order: put this one **before** ``ModelCheckpoint``,
    ``EarlyStopping``, ``ReduceLROnPlateau`` or ``TensorBoard`` so that they see
    ``val_mAP`` (History and the progress bar always come last).

    Args:
        validation_data: a re-iterable dataset of ``(inputs, targets)`` batches (see
            ``rfcn_tf.evaluation.model_evaluation``), e.g. a ``tf.data.Dataset``.
        every_n_epochs: evaluate after epochs n, 2n, … (1-based).
        metric, class_names, num_classes, iou_threshold, original_scale, steps: as in
            ``evaluate_model``.
        verbose: 1 shows the progress while detecting.
        log_per_class: also log each class's AP.
        log_dir: also write each evaluation into this TensorBoard log dir
            (``rfcn_tf.evaluation.tensorboard``): mAP and per-class AP scalars, a
            precision–recall curve per class, and the first ``num_images`` validation
            images with ground truth and detections (score ≥ ``score_threshold``) side
            by side.

    The latest result dict is kept in ``self.last_result`` and all of them in
    ``self.results`` ``{epoch (0-based): result}``.
    """

    def __init__(
        self,
        validation_data,
        every_n_epochs=1,
        metric="voc07",
        class_names=None,
        num_classes=None,
        iou_threshold=0.5,
        original_scale=False,
        steps=None,
        verbose=1,
        log_per_class=True,
        log_dir=None,
        num_images=4,
        score_threshold=0.5,
    ):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or (every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
            raise ValueError(f"num_images must be an int >= 0, got {num_images!r}")
        self.validation_data = validation_data
        self.every_n_epochs = every_n_epochs
        self.collect_args = {"original_scale": original_scale, "steps": steps, "verbose": verbose}
        self.score_args = {
            "metric": metric,
            "class_names": class_names,
            "num_classes": num_classes,
            "iou_threshold": iou_threshold,
        }
        self.log_per_class = log_per_class
        if log_dir is not None:  # fail now rather than after the first epoch
            _optional.tensorflow("MeanAveragePrecisionCallback(log_dir=...), TensorBoard logs")
        self.log_dir = log_dir
        self.num_images = num_images
        self.score_threshold = score_threshold
        self._writer = None
        self.results = {}
        self.last_result = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        kept = []
        on_batch = None
        if self.log_dir is not None and self.num_images:

            def on_batch(inputs, targets):
                if len(kept) < self.num_images:
                    kept.extend(_images(inputs, targets)[: self.num_images - len(kept)])

        detections, ground_truth = collect_detections(
            self.model, self.validation_data, on_batch=on_batch, **self.collect_args
        )
        result = evaluate_detections(detections, ground_truth, **self.score_args)
        self.results[epoch] = self.last_result = result
        if logs is not None:
            logs.update(log_values(result, self.log_per_class))
        if self.log_dir is not None:
            self._write(epoch, result, detections, ground_truth, kept)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, epoch, result, detections, ground_truth, kept):
        curves = precision_recall_curves(
            detections, ground_truth, **{k: v for k, v in self.score_args.items() if k != "metric"}
        )
        names = self.score_args["class_names"]
        pictures = []
        for (image, scale), det, gt in zip(kept, detections, ground_truth):
            # Boxes are in the batch's pixels, or divided by the scale with original_scale.
            scale = scale if self.collect_args["original_scale"] else 1.0
            pictures.append(
                side_by_side(
                    image,
                    {"boxes": gt["boxes"] * scale, "labels": gt["labels"]},
                    {"boxes": det["boxes"] * scale, "scores": det["scores"], "labels": det["labels"]},
                    class_names=names,
                    score_threshold=self.score_threshold,
                )
            )
        if self._writer is None:
            tf = _optional.tensorflow("MeanAveragePrecisionCallback(log_dir=...), TensorBoard logs")
            self._writer = tf.summary.create_file_writer(self.log_dir)
        write_evaluation(self._writer, epoch, result, curves, pictures)


def _images(inputs, targets):
    """A batch → per image ``(uint8 [h, w, 3] without the batch's padding, scale)``."""
    images = np.asarray(inputs["images"])
    sizes = (
        np.asarray(inputs["image_sizes"])
        if "image_sizes" in inputs
        else np.tile(images.shape[1:3], (len(images), 1))
    )
    scales = np.asarray(targets["scales"]) if "scales" in targets else np.ones(len(images))
    return [
        (np.clip(np.rint(image[:h, :w]), 0, 255).astype(np.uint8), float(scale))
        for image, (h, w), scale in zip(images, sizes.astype(int), scales)
    ]


def log_values(result, per_class=True):
    """``evaluate_detections`` result → flat ``{"val_mAP": …, "val_AP/<class>": …}``."""
    values = {"val_mAP": result["mAP"]}
    values.update({f"val_{key}": value for key, value in result.get("coco", {}).items()})
    if per_class:
        values.update({f"val_AP/{name}": ap for name, ap in result["per_class"].items()})
    return values
