"""Crash-safe saving for ``model.fit``: a backup to resume from, the best model by a metric,
and an atomic ``model.save`` — a process killed at any moment, even while writing, leaves
the last complete file in place and no file that fails to load."""

import glob
import json
import os
import re

import keras

from rfcn_tf.keras_internals import resume_at_epoch

_BACKUP = re.compile(r"(partial-)?epoch-(\d+)\.weights\.h5")


def atomic_save(model, path):
    """``model.save(path)`` through a temporary file and a rename (atomic on one file system)."""
    tmp = f"{path}.partial.keras"
    model.save(tmp)
    os.replace(tmp, path)


def last_backup_epoch(backup_dir):
    """The number of epochs the newest complete backup in ``backup_dir`` holds (0: none)."""
    names = map(os.path.basename, glob.glob(os.path.join(backup_dir, "*.weights.h5")))
    epochs = [int(m.group(2)) for m in map(_BACKUP.fullmatch, names) if m and not m.group(1)]
    return max(epochs, default=0)


class CrashSafeBackup(keras.callbacks.Callback):
    """Keras's ``BackupAndRestore`` made atomic: after each epoch the weights and optimizer
    state go to ``backup_dir/epoch-N.weights.h5`` (N epochs done; written to a temporary
    file, then renamed, so the epoch count and the weights can never disagree); at the start
    of training the newest one is loaded and ``fit`` continues at epoch N. The backup is
    deleted when training ends, as Keras's is."""

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = backup_dir

    def on_train_begin(self, logs=None):
        epoch = last_backup_epoch(self.backup_dir)
        if not epoch:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        path = self._path(epoch)
        try:
            self.model.load_weights(path)
        except ValueError as error:
            raise ValueError(
                f"cannot resume from {path}: the backup does not fit this model (a run started "
                "with rfcn_tf 0.2–0.7, whose files keep the weights at other paths, cannot be resumed "
                "by a later release: start it again, or train from its best.keras with --init). "
                f"Keras: {str(error).splitlines()[0]}"
            ) from None
        resume_at_epoch(self.model, epoch)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        path = self._path(epoch + 1)
        tmp = os.path.join(self.backup_dir, "partial-" + os.path.basename(path))
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
        self._remove(keep=path)  # older epochs, and a partial file of a killed run

    def on_train_end(self, logs=None):
        self._remove()

    def _remove(self, keep=None):
        for old in glob.glob(os.path.join(self.backup_dir, "*.weights.h5")):
            if old != keep and _BACKUP.fullmatch(os.path.basename(old)):
                os.remove(old)

    def _path(self, epochs_done):
        return os.path.join(self.backup_dir, f"epoch-{epochs_done}.weights.h5")


class BestModel(keras.callbacks.Callback):
    """Saves the model to ``path`` (atomically) whenever ``monitor`` (a log key, e.g.
    ``val_mAP``) improves on its best value so far (``mode``: ``"max"`` or ``"min"``). The
    value is kept beside it (``path.json``), so a resumed run keeps the earlier best."""

    def __init__(self, path, monitor="val_mAP", mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = None

    def on_train_begin(self, logs=None):
        if os.path.isfile(self.path) and os.path.isfile(self.path + ".json"):
            with open(self.path + ".json") as f:
                self.best = json.load(f).get(self.monitor)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            atomic_save(self.model, self.path)
            tmp = self.path + ".json.partial"
            with open(tmp, "w") as f:
                json.dump({self.monitor: value, "epoch": epoch + 1}, f)
            os.replace(tmp, self.path + ".json")
