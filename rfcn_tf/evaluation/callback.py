"""``MeanAveragePrecisionCallback``: detection mAP in the epoch logs during ``fit``."""

import keras

from rfcn_tf.evaluation.metrics import METRICS
from rfcn_tf.evaluation.model_evaluation import evaluate_model


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
        verbose: 1 shows a progress bar while detecting.
        log_per_class: also log each class's AP.

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
    ):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or (
            every_n_epochs < 1
        ):
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.validation_data = validation_data
        self.every_n_epochs = every_n_epochs
        self.evaluation_args = {
            "metric": metric,
            "class_names": class_names,
            "num_classes": num_classes,
            "iou_threshold": iou_threshold,
            "original_scale": original_scale,
            "steps": steps,
            "verbose": verbose,
        }
        self.log_per_class = log_per_class
        self.results = {}
        self.last_result = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        result = evaluate_model(self.model, self.validation_data, **self.evaluation_args)
        self.results[epoch] = self.last_result = result
        if logs is not None:
            logs.update(log_values(result, self.log_per_class))


def log_values(result, per_class=True):
    """``evaluate_detections`` result → flat ``{"val_mAP": …, "val_AP/<class>": …}``."""
    values = {"val_mAP": result["mAP"]}
    values.update({f"val_{key}": value for key, value in result.get("coco", {}).items()})
    if per_class:
        values.update({f"val_AP/{name}": ap for name, ap in result["per_class"].items()})
    return values
