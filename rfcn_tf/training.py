"""Training helpers: the one training recipe (``make_optimizer``), fine-tuning to new
classes, frozen stages, and ``fit_detector`` — ``model.fit`` with the callbacks a detector
run wants. The demo and ``rfcn-tf train`` both train through these."""

import functools
import os
import time

import keras
from keras import ops

from rfcn_tf.backbones import freeze
from rfcn_tf.backup import BestModel, CrashSafeBackup, atomic_save, last_backup_epoch
from rfcn_tf.evaluation import MeanAveragePrecisionCallback
from rfcn_tf.keras_internals import distribute_strategy
from rfcn_tf.model import RFCN

# Layers whose shape depends on the number of classes (re-initialised by with_num_classes).
CLASS_LAYERS = ("class_maps", "class_logits")


OPTIMIZERS = ("auto", "sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
# Where the step schedule divides the learning rate by 10 when no boundaries are given, as
# a fraction of the run: the paper's 20k of 30k for SGD; the last eighth for AdamW.
DEFAULT_DROP = {"sgd": 2 / 3, "adamw": 7 / 8}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-4}


def choose_optimizer(optimizer, backbone_weights):
    """``"auto"`` → the paper's SGD when backbone weights are loaded (its recipe fine-tunes
    ImageNet features), AdamW from random init (where SGD at 1e-3 barely learns)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "auto":
        return "sgd" if backbone_weights is not None else "adamw"
    return optimizer


@keras.saving.register_keras_serializable(package="rfcn_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up from ``learning_rate / 10`` over ``warmup_steps``, then ``after``
    (a schedule of the steps since the warm-up ended, or a constant rate)."""

    def __init__(self, learning_rate, warmup_steps, after):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.after = keras.optimizers.schedules.deserialize(after) if isinstance(after, dict) else after

    def __call__(self, step):
        step = ops.cast(step, "float32")
        after = self.after(step - self.warmup_steps) if callable(self.after) else self.after
        fraction = ops.minimum(step / max(self.warmup_steps, 1), 1.0)
        warm = self.learning_rate * (0.1 + 0.9 * fraction)
        return ops.where(step < self.warmup_steps, warm, ops.cast(after, "float32"))

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.optimizers.schedules.serialize(after)
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps, "after": after}


def make_optimizer(
    learning_rate=1e-3,
    boundaries=None,
    decay=0.1,
    momentum=0.9,
    weight_decay=None,
    clipnorm=None,
    optimizer="sgd",
    total_steps=None,
    schedule="step",
    warmup_steps=0,
):
    """The training recipe: an optimiser and its learning-rate schedule.

    optimizer: ``"sgd"`` (momentum, the paper's) or ``"adamw"`` (``choose_optimizer``
    picks one from the backbone weights). weight_decay:
    default 5e-4 for SGD (the paper's), 1e-4 for AdamW; BatchNorm and biases are excluded.
    schedule: ``"step"`` multiplies the rate by ``decay`` at each step in ``boundaries``
    (default with ``total_steps``: once, at 2/3 of the run for SGD, 7/8 for AdamW);
    ``"cosine"`` decays to 0 over ``total_steps``; ``"constant"``. warmup_steps: a linear
    warm-up first. The paper's VOC recipe is ``make_optimizer(1e-3, boundaries=[20000])``
    for 30k mini-batches; the demo's is ``make_optimizer(optimizer="adamw",
    total_steps=steps)``.
    """
    if optimizer not in OPTIMIZERS[1:]:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS[1:]}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if total_steps is not None and int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if schedule == "cosine" and total_steps is None:
        raise ValueError("the cosine schedule needs total_steps")
    warmup_steps = int(warmup_steps)
    decay_steps = None if total_steps is None else max(int(total_steps) - warmup_steps, 1)

    rate = learning_rate
    if schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    elif schedule == "step":
        if boundaries is None:
            boundaries = [] if decay_steps is None else [max(round(decay_steps * DEFAULT_DROP[optimizer]), 1)]
        if boundaries:
            values = [learning_rate * decay**i for i in range(len(boundaries) + 1)]
            rate = keras.optimizers.schedules.PiecewiseConstantDecay(list(boundaries), values)
    if warmup_steps > 0:
        rate = WarmupSchedule(learning_rate, warmup_steps, rate)

    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(rate, momentum=momentum, weight_decay=weight_decay, clipnorm=clipnorm)
    else:
        opt = keras.optimizers.AdamW(rate, weight_decay=weight_decay, clipnorm=clipnorm)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def with_num_classes(model, num_classes, class_names=None, **changes):
    """A copy of ``model`` for ``num_classes`` classes: every weight kept except the
    class-specific output layer, which starts fresh (fine-tuning on new classes).
    ``changes``: other ``RFCNConfig`` fields to change that keep the weights' shapes
    (e.g. ``min_side`` / ``max_side``)."""
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    config = model.config.replace(
        num_classes=num_classes, class_names=tuple(class_names) if class_names else None, **changes
    )
    new = RFCN(config=config)
    old_weights = {v.path: v for v in model.weights}
    for variable in new.weights:
        source = old_weights.get(variable.path)
        if source is None or tuple(source.shape) != tuple(variable.shape):
            if not any(name in variable.path for name in CLASS_LAYERS):
                raise ValueError(f"no matching weight for {variable.path} in the source model")
            continue
        variable.assign(source)
    return new


def freeze_stages(model, stages):
    """Freeze the backbone up to and including stage ``stages`` (0 = nothing, 1 = conv1,
    2 = conv1+res2 as the paper, …, 5 = all of the backbone); unfreeze the rest.
    BatchNorm layers keep the model's ``freeze_batchnorm`` setting."""
    freeze(model.trunk, model.conv5, stages, model.config.freeze_batchnorm)


class ProgressLogger(keras.callbacks.Callback):
    """A line every ``every`` training steps: the epoch and step, the epoch's mean losses so
    far, the time per step over the last ``every`` steps and the time left in the run (for
    logs and notebooks where a progress bar is one line per epoch)."""

    def __init__(self, every=100, print_fn=functools.partial(print, flush=True)):
        super().__init__()
        self.every = int(every)
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.print_fn = print_fn

    def on_train_begin(self, logs=None):
        self._done, self._last = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is None:  # the first step includes tracing: time from its end
            self._last, self._since = now, 0
            return
        self._done += 1
        self._since += 1
        steps, epochs = self.params.get("steps"), self.params.get("epochs", 1)
        if (batch + 1) % self.every and batch + 1 != steps:
            return
        per_step = (now - self._last) / self._since
        self._last, self._since = now, 0
        where = f"epoch {self._epoch + 1}/{epochs} step {batch + 1}"
        left = ""
        if steps:
            where += f"/{steps}"
            remaining = (epochs - self._epoch) * steps - (batch + 1)
            left = f", {remaining * per_step / 60:.1f} min left"
        losses = " ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()))
        self.print_fn(f"{where}: {losses}; {per_step * 1000:.0f} ms/step{left}")


def fit_detector(
    model,
    train_ds,
    val_ds=None,
    epochs=10,
    output_dir=None,
    class_names=None,
    metric="voc07",
    eval_every=1,
    callbacks=(),
    verbose="auto",
    log_every=None,
    tensorboard_images=4,
    **fit_kwargs,
):
    """``model.fit`` with: the ``val_mAP`` callback (when ``val_ds`` is given), and under
    ``output_dir`` the best model by val_mAP (``best.keras``), TensorBoard logs
    (``logs/``; with ``val_ds`` also ``logs/evaluation/``: per-class AP, precision–recall
    curves and the first ``tensorboard_images`` validation images with ground truth and
    detections), a crash-safe backup to resume from (``backup/``, one per epoch) and the
    final model (``final.keras``); every file written atomically. log_every: a
    ``ProgressLogger`` line every this many steps. Returns the History.

    train_ds: a dataset, or a function ``epoch → dataset`` of that epoch's batches (the
    same number each epoch). With a function a resumed run trains every epoch on exactly
    the batches an uninterrupted run would; a dataset that reshuffles per iteration
    instead starts its shuffling over in the new process. The function may also return a
    ``keras.utils.PyDataset`` that advances its own epochs in ``on_epoch_end``
    (``rfcn_tf.data.DetectionDataset``): it is asked for the first epoch to train and used
    for the rest.

    TensorBoard logs and pictures need the TensorFlow backend: under JAX and PyTorch there
    are none (a line says so)."""
    all_callbacks = [] if log_every is None else [ProgressLogger(log_every)]
    tensorboard = output_dir is not None and keras.backend.backend() == "tensorflow"
    if output_dir is not None and not tensorboard:
        print(f"no TensorBoard logs under the {keras.backend.backend()} backend (they need TensorFlow)")
    if val_ds is not None:
        log_dir = os.path.join(output_dir, "logs", "evaluation") if tensorboard else None
        all_callbacks.append(
            MeanAveragePrecisionCallback(
                val_ds,
                every_n_epochs=eval_every,
                metric=metric,
                class_names=class_names,
                num_classes=model.config.num_classes,
                verbose=0,
                log_dir=log_dir,
                num_images=tensorboard_images,
            )
        )
    start = 0
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        if val_ds is not None:
            all_callbacks.append(BestModel(os.path.join(output_dir, "best.keras"), "val_mAP"))
        if tensorboard:
            all_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")))
        backup = os.path.join(output_dir, "backup")
        all_callbacks.append(CrashSafeBackup(backup))
        start = last_backup_epoch(backup)
    all_callbacks.extend(callbacks)
    if callable(train_ds):
        first = train_ds(min(start, epochs - 1))
        if isinstance(first, keras.utils.PyDataset):
            train_ds = first
        else:
            train_ds, fit_kwargs["steps_per_epoch"] = _epoch_stream(model, train_ds, first, start, epochs)
    # make_pipeline and DetectionDataset shuffle; fit's default shuffle=True only makes Keras
    # warn on a Dataset, and would reorder a PyDataset's batches with Python's random.
    fit_kwargs.setdefault("shuffle", False)
    history = model.fit(train_ds, epochs=epochs, callbacks=all_callbacks, verbose=verbose, **fit_kwargs)
    if output_dir is not None:
        atomic_save(model, os.path.join(output_dir, "final.keras"))
    return history


def _epoch_stream(model, epoch_batches, first, start, epochs):
    """Epochs ``start`` .. ``epochs − 1`` of ``epoch_batches(epoch)`` one after the other
    (``fit`` then keeps one iterator; ``first`` is the first of them) → ``(dataset, steps
    per epoch)``."""
    datasets = [first] + [epoch_batches(e) for e in range(min(start, epochs - 1) + 1, epochs)]
    steps = int(datasets[0].cardinality())
    if steps < 1:
        raise ValueError(
            f"epoch_batches(epoch) must give a dataset of known, non-zero length; got cardinality {steps}"
        )
    stream = functools.reduce(lambda a, b: a.concatenate(b), datasets)
    if distribute_strategy(model) is not None:
        # Under a strategy Keras's fit builds the model on one batch drawn from the iterator
        # it then trains from: give it a copy of the first batch to take.
        stream = datasets[0].take(1).concatenate(stream)
    return stream, steps
