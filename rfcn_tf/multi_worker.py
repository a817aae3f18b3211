"""Training across machines: a loop under ``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3's ``model.fit`` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585,
tensorflow/tensorflow#72388), so ``train_multi_worker`` does what ``fit`` does for R-FCN, with
the model's own ``compute_loss`` and optimizer: ``strategy.run`` of a training step over a
distributed dataset, the named losses in the progress lines, ``val_mAP``, a checkpoint per
epoch and resumption from it.

Every worker runs the same program with its own ``TF_CONFIG`` (``{"cluster": {"worker":
["host0:port", "host1:port", …]}, "task": {"type": "worker", "index": i}}``; worker 0 is the
chief, which prints, evaluates and writes ``final.keras``). Each worker builds the same
global batches (same data, same seed) and keeps its replicas' contiguous slices of them, so
a step is the step one process would take on the whole global batch. The input order of an
epoch is a function of the seed and the epoch alone, so a resumed run continues with the data
an uninterrupted one would have seen.
"""

import json
import os
import shutil
import time

import tensorflow as tf

from rfcn_tf.backup import atomic_save

CHECKPOINT_DIR = "checkpoints"


def worker_info():
    """``(task index, number of workers)`` from ``TF_CONFIG`` (``(0, 1)`` without it)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = config.get("cluster", {}).get("worker", [None])
    return int(config.get("task", {}).get("index", 0)), len(workers)


def replica_slices(global_batches, replicas, first, count):
    """Global batches ``(inputs, targets)`` → their replica-sized slices ``first .. first +
    count − 1`` (of ``replicas`` equal ones), one dataset element each, in order."""

    def slices(inputs, targets):
        size = tf.shape(inputs["images"])[0] // replicas
        parts = [
            tf.nest.map_structure(lambda t, i=i: t[i * size : (i + 1) * size], (inputs, targets))
            for i in range(first, first + count)
        ]
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *ts: tf.stack(ts), *parts))

    return global_batches.flat_map(slices)


def train_multi_worker(
    build_model,
    make_dataset,
    epochs,
    output_dir,
    val_ds=None,
    class_names=None,
    metric="voc07",
    eval_every=1,
    log_every=50,
    strategy=None,
):
    """Train with ``strategy`` (default ``MultiWorkerMirroredStrategy()``, which reads
    ``TF_CONFIG``) and return the model.

    build_model(): a compiled ``RFCN`` (called under the strategy's scope).
    make_dataset(epoch): that epoch's global batches, ``(inputs, targets)`` as
        ``make_pipeline`` gives them, the same on every worker (seed it with the epoch), of a
        batch size divisible by the number of replicas (``drop_remainder=True``).
    output_dir: ``checkpoints/`` (one per epoch; a rerun resumes from the newest),
        ``final.keras`` (the chief's).
    val_ds: batches for ``val_mAP`` (the chief evaluates every ``eval_every`` epochs).
    """
    strategy = strategy or tf.distribute.MultiWorkerMirroredStrategy()
    task, _ = worker_info()
    chief = task == 0
    replicas = strategy.num_replicas_in_sync
    local = len(strategy.extended.worker_devices)

    with strategy.scope():
        model = build_model()
        epoch_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_done)
    # Every worker writes (the save is collective), the chief into output_dir, the others
    # into a directory of their own that is removed afterwards.
    directory = os.path.join(output_dir, CHECKPOINT_DIR)
    write_dir = directory if chief else os.path.join(output_dir, f".worker_{task}_checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        checkpoint.restore(latest)
        _say(
            chief,
            f"resumed from {latest} after epoch {int(epoch_done.numpy())}, "
            f"step {int(model.optimizer.iterations.numpy())}",
        )

    def distributed(epoch):
        def per_worker(context):
            first = context.input_pipeline_id * local
            return replica_slices(make_dataset(epoch), replicas, first, local)

        return strategy.distribute_datasets_from_function(per_worker)

    @tf.function
    def train_step(data):
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                raw = model.features_model(inputs, training=True)
                loss = model.compute_loss(inputs, targets, raw, training=True)
                scaled = model.optimizer.scale_loss(loss)
            model.optimizer.apply(tape.gradient(scaled, model.trainable_variables), model.trainable_variables)
            return loss

        return strategy.reduce("SUM", strategy.run(step, args=data), axis=None)

    for epoch in range(int(epoch_done.numpy()), epochs):
        for tracker in model.loss_trackers.values():
            tracker.reset_state()
        start, steps, total = time.time(), 0, 0.0
        for data in distributed(epoch):
            total += float(train_step(data))
            steps += 1
            if log_every and steps % log_every == 0:
                _say(chief, f"epoch {epoch + 1}/{epochs} step {steps}: {_losses(model, total, steps)}")
        logs = _losses(model, total, steps)
        if val_ds is not None and chief and (epoch + 1) % eval_every == 0:
            from rfcn_tf.evaluation import evaluate_model

            result = evaluate_model(
                lambda x: model(x, training=False),
                val_ds,
                metric=metric,
                class_names=class_names,
                bounding_box_format=model.config.bounding_box_format,
            )
            logs += f" - val_mAP: {result['mAP']:.4f}"
        epoch_done.assign(epoch + 1)
        manager.save()
        _say(chief, f"epoch {epoch + 1}/{epochs}: {steps} steps in {time.time() - start:.0f} s - {logs}")
    if chief:
        atomic_save(model, os.path.join(output_dir, "final.keras"))
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    return model


def _losses(model, total, steps):
    named = " - ".join(f"{name}: {float(t.result()):.4f}" for name, t in model.loss_trackers.items())
    return f"loss: {total / max(steps, 1):.4f} - {named}"


def _say(chief, text):
    if chief:
        print(text, flush=True)
