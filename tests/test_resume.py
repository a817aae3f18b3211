"""Crash safety of ``rfcn-tf train`` (the ``model.fit`` path): a run killed with SIGKILL
mid-epoch, or while it writes its backup, resumes to the weights of a run that was never
interrupted. Op determinism (``--deterministic``) makes "the same" bit-identical; each
epoch's batches are a function of the seed and the epoch (``fit_detector(epoch → dataset)``),
so the resumed process does not replay the first epoch's shuffle order."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import rfcn_tf  # noqa: F401  (registers the model class)
from rfcn_tf.backup import CrashSafeBackup, last_backup_epoch
from rfcn_tf.data import load_examples
from tests.process_helpers import sigkill_at

EPOCHS = 3
STEPS = 8  # rfcn_shapes/tiny: 16 training images in batches of 2
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env():
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    load_examples("rfcn_shapes/tiny", "train", data_dir=str(path))  # built once, outside the runs
    return str(path)


def train_args(data_dir, out):
    return [
        "train",
        "--small",
        "--dataset",
        "rfcn_shapes/tiny",
        "--data-dir",
        data_dir,
        "--min-side",
        "128",
        "--max-side",
        "128",
        "--batch-size",
        "2",
        "--epochs",
        str(EPOCHS),
        "--deterministic",
        "--log-every",
        "1",
        "--seed",
        "3",
        "--output-dir",
        str(out),
    ]


def train(data_dir, out):
    done = subprocess.run(
        [sys.executable, "-m", "rfcn_tf.cli", *train_args(data_dir, out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    train(data_dir, out)
    return keras.models.load_model(out / "final.keras")


def assert_same_run(model, reference):
    steps = int(model.optimizer.iterations.numpy())
    assert steps == int(reference.optimizer.iterations.numpy()) == EPOCHS * STEPS
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(data_dir, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    status = sigkill_at(
        [sys.executable, "-m", "rfcn_tf.cli", *train_args(data_dir, out)],
        env(),
        lambda line: f"epoch 2/{EPOCHS} step 5/{STEPS}:" in line,
    )  # epoch 1 saved
    assert status == -9
    assert last_backup_epoch(str(out / "backup")) == 1 and not (out / "final.keras").exists()

    # (Keras's progress bar shares stdout, so the lines are searched, not split.)
    first = re.search(r"epoch (\d+)/\d+ step (\d+)/", train(data_dir, out))
    assert first.groups() == ("2", "2"), first.group(0)  # step 1 was tracing
    assert_same_run(keras.models.load_model(out / "final.keras"), uninterrupted)
    assert not os.listdir(out / "backup")  # removed when training ended


CRASH_WHILE_SAVING = r"""
import os, sys
import keras
from rfcn_tf.cli import main

save = keras.Model.save_weights
def save_then_die(self, path, *args, **kwargs):
    save(self, path, *args, **kwargs)
    if "epoch-2" in os.path.basename(path):  # the second backup: cut short mid-write
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os._exit(9)
keras.Model.save_weights = save_then_die
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_kill_while_the_backup_is_written_leaves_the_last_one_loadable(data_dir, uninterrupted, tmp_path):
    out = tmp_path / "crashed"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_WHILE_SAVING)
    done = subprocess.run(
        [sys.executable, str(script), *train_args(data_dir, out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 9, done.stderr[-3000:]
    names = sorted(os.listdir(out / "backup"))
    assert names == ["epoch-1.weights.h5", "partial-epoch-2.weights.h5"], names
    assert last_backup_epoch(str(out / "backup")) == 1  # the half-written file is not a backup

    assert re.search(r"epoch (\d+)/\d+ step", train(data_dir, out)).group(1) == "2"
    assert_same_run(keras.models.load_model(out / "final.keras"), uninterrupted)


def test_last_backup_epoch_reads_only_complete_backups(tmp_path):
    assert last_backup_epoch(str(tmp_path)) == 0
    assert last_backup_epoch(str(tmp_path / "missing")) == 0
    for name in (
        "epoch-3.weights.h5",
        "epoch-12.weights.h5",
        "partial-epoch-13.weights.h5",
        "epoch-x.weights.h5",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"")
    assert last_backup_epoch(str(tmp_path)) == 12
    callback = CrashSafeBackup(str(tmp_path))
    callback._remove(keep=str(tmp_path / "epoch-12.weights.h5"))
    assert sorted(os.listdir(tmp_path)) == ["epoch-12.weights.h5", "epoch-x.weights.h5", "notes.txt"]
