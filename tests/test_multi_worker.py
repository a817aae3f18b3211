"""``rfcn_tf.multi_worker``: two worker processes on localhost under
``MultiWorkerMirroredStrategy`` end with identical weights, equal to one process's run on
the same global batches; ``rfcn-tf train --strategy multi_worker`` resumes from its
checkpoint."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rfcn_tf.data import load_examples
from tests.process_helpers import sigkill_at

pytestmark = pytest.mark.slow  # worker processes / the script in a process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, os, sys
task, ports, out, data_dir = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
if ports:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": task}})
import tensorflow as tf
# Op determinism: TensorFlow's CPU CropAndResize image gradient otherwise adds from several
# threads without synchronisation (tensorflow/tensorflow#42033), which no tolerance bounds.
tf.config.experimental.enable_op_determinism()
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, numpy as np
from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.data import load_examples, make_pipeline
from rfcn_tf.multi_worker import train_multi_worker

examples, names = load_examples("rfcn_shapes/tiny", "train", data_dir=data_dir)
keras.utils.set_random_seed(0)

def build():
    # BatchNorm frozen: its statistics are the one per-replica quantity.
    model = RFCN(config=RFCNConfig.small(num_classes=len(names), min_side=128, max_side=128,
                                         freeze_batchnorm=True))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    return model

def batches(epoch):  # global batches of 4, the same on every worker
    return make_pipeline(examples, 4, 128, 128, training=True, seed=epoch, drop_remainder=True)

model = train_multi_worker(build, batches, 2, out, strategy=strategy, log_every=1)
np.savez(os.path.join(out, f"weights_{task}.npz"), *[v.numpy() for v in model.trainable_variables])
print("steps", int(model.optimizer.iterations.numpy()), "replicas", strategy.num_replicas_in_sync)
"""


def free_ports(count):
    """``count`` ports free at the moment of asking (another process may take one before the
    workers bind it: ``run_cluster`` retries then)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_cluster(script, out, data_dir, attempts=3, timeout=600):
    """Two worker processes of ``script`` on fresh localhost ports → [(returncode, stdout,
    stderr)]. When one fails the other is stopped (it would wait for its peer); when one
    could not bind its port (taken since ``free_ports`` asked), both run again on new ports."""
    logs = os.path.join(os.path.dirname(str(out)), "worker_logs")
    os.makedirs(logs, exist_ok=True)
    for attempt in range(attempts):
        ports = json.dumps(free_ports(2))
        files = [[open(os.path.join(logs, f"{i}.{name}"), "w+") for name in ("out", "err")] for i in range(2)]
        workers = [
            subprocess.Popen(
                [sys.executable, str(script), str(i), ports, str(out), data_dir],
                stdout=files[i][0],
                stderr=files[i][1],
                text=True,
                env=env(),
            )
            for i in range(2)
        ]
        deadline = time.monotonic() + timeout
        try:
            while any(w.poll() is None for w in workers):
                if any(w.poll() not in (None, 0) for w in workers) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            for w in workers:
                w.kill()
                w.wait()
        results = []
        for w, pair in zip(workers, files):
            texts = []
            for f in pair:
                f.seek(0)
                texts.append(f.read())
                f.close()
            results.append((w.returncode, *texts))
        taken = any("Could not start gRPC server" in stderr for _, _, stderr in results)
        if not taken or attempt == attempts - 1:
            return results
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    load_examples("rfcn_shapes/tiny", "train", data_dir=directory)  # built once, before the workers
    return directory


def env():
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def test_two_workers_train_identically_and_as_one_process(tmp_path, data_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "cluster"
    results = run_cluster(script, out, data_dir)
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    chief = results[0][1]
    assert "steps 8 replicas 2" in chief and "epoch 2/2: 4 steps" in chief, chief
    assert "rpn_cls_loss" in chief and "cls_loss" in chief  # the named losses in the progress
    assert (out / "final.keras").is_file() and (out / "checkpoints").is_dir()
    assert not (out / ".worker_1_checkpoints").exists()  # the non-chief's copies are removed

    single = tmp_path / "single"
    done = subprocess.run(
        [sys.executable, str(script), "0", "[]", str(single), data_dir],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps 8 replicas 1" in done.stdout

    first, second = weights(out / "weights_0.npz"), weights(out / "weights_1.npz")
    for a, b in zip(first, second):  # the same all-reduced updates on every worker
        np.testing.assert_array_equal(a, b)
    alone = weights(single / "weights_0.npz")
    relative = [np.abs(a - b).max() / (np.abs(b).max() + 1e-12) for a, b in zip(first, alone)]
    # Two replicas sum their halves in another order than one device sums the whole batch
    # (and a near-tied OHEM/NMS choice can flip): equal to float tolerance, not bit-equal.
    assert np.median(relative) < 1e-4 and max(relative) < 1e-2, (np.median(relative), max(relative))


def train_command(data_dir, out, epochs):
    return [
        sys.executable,
        "-m",
        "rfcn_tf.cli",
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
        "4",
        "--epochs",
        str(epochs),
        "--strategy",
        "multi_worker",
        "--deterministic",
        "--output-dir",
        str(out),
    ]


def test_sigkilled_run_resumes_to_the_uninterrupted_runs_weights(tmp_path, data_dir):
    """``rfcn-tf train --strategy multi_worker`` killed with SIGKILL after its first epoch's
    checkpoint, then the same command again: it resumes after the last saved epoch and ends
    bit-identical to a run that was never interrupted (op determinism on; an epoch's input
    order depends on the seed and the epoch only)."""
    whole = subprocess.run(
        train_command(data_dir, tmp_path / "whole", 3), capture_output=True, text=True, timeout=600, env=env()
    )
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = tmp_path / "killed"
    # "epoch 1/3:" is printed once the epoch's checkpoint is written.
    status = sigkill_at(train_command(data_dir, killed, 3), env(), lambda line: line.startswith("epoch 1/3:"))
    assert status == -9
    assert not (killed / "final.keras").exists()

    resumed = subprocess.run(
        train_command(data_dir, killed, 3), capture_output=True, text=True, timeout=600, env=env()
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = [line for line in resumed.stdout.splitlines() if line.startswith("resumed from")]
    assert done and ("after epoch 1, step 4" in done[0] or "after epoch 2, step 8" in done[0]), resumed.stdout
    import keras

    import rfcn_tf  # noqa: F401  (registers the model class)

    a = keras.models.load_model(tmp_path / "whole" / "final.keras")
    b = keras.models.load_model(killed / "final.keras")
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 12
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
