"""``rfcn_tf.multi_worker``: two worker processes on localhost under
``MultiWorkerMirroredStrategy`` train as one process does on the same global batches, variable
by variable; two workers of ``rfcn-tf train --strategy multi_worker`` SIGKILLed mid-epoch
resume from their checkpoint to the uninterrupted run's weights, bit for bit."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rfcn_tf.data import load_examples

pytestmark = pytest.mark.slow  # worker processes / the script in a process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import os, sys
out, data_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
import tensorflow as tf
# Op determinism: TensorFlow's CPU CropAndResize image gradient otherwise adds from several
# threads without synchronisation (tensorflow/tensorflow#42033), which no tolerance bounds.
tf.config.experimental.enable_op_determinism()
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # the cluster of TF_CONFIG, or alone
import keras, numpy as np
from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.data import load_examples, make_pipeline
from rfcn_tf.multi_worker import train_multi_worker, worker_info

examples, names = load_examples("rfcn_shapes/tiny", "train", data_dir=data_dir)
keras.utils.set_random_seed(seed)
task = worker_info()[0]

def build():
    # BatchNorm frozen (its statistics are the one per-replica quantity) and random RoI
    # sampling (OHEM's top-k has near-ties that rounding can flip).
    config = RFCNConfig.small(num_classes=len(names), min_side=128, max_side=128,
                              freeze_batchnorm=True, roi_sampler="random")
    model = RFCN(config=config)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, f"initial_{task}.npz"), *[v.numpy() for v in model.trainable_variables])
    return model

def batches(epoch):  # one global batch of 4 an epoch, the same on every worker
    return make_pipeline(examples, 4, 128, 128, training=True, seed=seed + 1000 * epoch,
                         drop_remainder=True).take(1)

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


def run_cluster(command, logs, kill_when=None, attempts=3, timeout=600):
    """``command`` (an argv) as the two workers of a localhost cluster (each with its
    ``TF_CONFIG``) → [(returncode, stdout, stderr)], the chief's first. When one fails the
    other is stopped (it would wait for its peer); when one could not bind its port (taken
    since ``free_ports`` asked; nothing is written before that), both run again on new
    ports. kill_when(chief's stdout so far) → True: both are SIGKILLed at that moment."""
    os.makedirs(logs, exist_ok=True)
    for attempt in range(attempts):
        cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
        files = [[open(os.path.join(logs, f"{i}.{name}"), "w+") for name in ("out", "err")] for i in range(2)]
        workers = [
            subprocess.Popen(
                command,
                stdout=files[i][0],
                stderr=files[i][1],
                text=True,
                env={
                    **env(),
                    "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                },
            )
            for i in range(2)
        ]
        deadline = time.monotonic() + timeout
        try:
            while any(w.poll() is None for w in workers):
                if any(w.poll() not in (None, 0) for w in workers) or time.monotonic() > deadline:
                    break
                if kill_when is not None:
                    with open(files[0][0].name) as chief:
                        if kill_when(chief.read()):
                            break
                time.sleep(0.05)
        finally:
            for w in workers:
                w.kill()  # SIGKILL
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


def change(out, task):
    """What training changed in each trainable variable of worker ``task``'s model."""
    return [
        w - w0 for w, w0 in zip(weights(out / f"weights_{task}.npz"), weights(out / f"initial_{task}.npz"))
    ]


# Per variable, max |difference of the changes| over max |change of the one-process run|.
# The longest float32 sums of a step are the first convolution's filter gradients: one term
# per position of its output, 4 images × 64 × 64 (stride 2 on 128 × 128); n terms summed in
# another order (each worker's half, then the all-reduce) differ by at most (n − 1)·eps of
# their magnitudes. Measured after the 2 steps (a shared 2-core machine): worst variable
# 5.7e-5 (seed 2), 9.0e-5 (seed 0). After 8 steps (4 an epoch) a flipped near-tie in the
# proposals' top-k / NMS made it 3.2e-3 at one seed of three (0–2): hence one batch an epoch.
TOLERANCE = (4 * 64 * 64 - 1) * 2.0**-23  # 2.0e-3


def test_two_workers_train_as_one_process_on_the_same_global_batches(tmp_path, data_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "cluster"
    results = run_cluster([sys.executable, str(script), str(out), data_dir, "0"], tmp_path / "logs")
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    chief = results[0][1]
    assert "steps 2 replicas 2" in chief and "epoch 2/2: 1 steps" in chief, chief
    assert "rpn_cls_loss" in chief and "cls_loss" in chief  # the named losses in the progress
    assert (out / "final.keras").is_file() and (out / "checkpoints").is_dir()
    assert not (out / ".worker_1_checkpoints").exists()  # the non-chief's copies are removed

    single = tmp_path / "single"
    done = subprocess.run(
        [sys.executable, str(script), str(single), data_dir, "0"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps 2 replicas 1" in done.stdout

    for a, b in zip(weights(out / "weights_0.npz"), weights(out / "weights_1.npz")):
        np.testing.assert_array_equal(a, b)  # the all-reduce makes this so, whatever the data
    for a, b in zip(weights(out / "initial_0.npz"), weights(single / "initial_0.npz")):
        np.testing.assert_array_equal(a, b)
    # The evidence: each worker's replica computed its half of every global batch (by its
    # images' global rows), and the all-reduced sum equals one process's step on the whole.
    relative = [
        np.abs(a - b).max() / max(np.abs(b).max(), 1e-38) for a, b in zip(change(out, 0), change(single, 0))
    ]
    worst = int(np.argmax(relative))
    assert relative[worst] <= TOLERANCE, (worst, relative[worst], np.median(relative))


def train_command(data_dir, out, epochs):
    """``rfcn-tf train --strategy multi_worker``: global batches of 2 (one image a replica),
    8 steps an epoch, a progress line a step."""
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
        "1",
        "--epochs",
        str(epochs),
        "--strategy",
        "multi_worker",
        "--deterministic",
        "--log-every",
        "1",
        "--output-dir",
        str(out),
    ]


def test_both_workers_sigkilled_mid_epoch_resume_to_the_uninterrupted_runs_weights(tmp_path, data_dir):
    """Two workers of ``rfcn-tf train --strategy multi_worker`` SIGKILLed together in the
    middle of the second epoch, then started again: they resume from the first epoch's
    checkpoint (the loop checkpoints once an epoch), train the second epoch again and end
    bit-identical to a two-worker run that was never interrupted (op determinism on; an
    epoch's input order depends on the seed and the epoch only)."""
    whole = run_cluster(train_command(data_dir, tmp_path / "whole", 2), tmp_path / "logs")
    for code, _, stderr in whole:
        assert code == 0, stderr[-3000:]
    assert "on 8 batches of 2 × 2 epochs on 2 replicas (multi_worker)" in whole[0][1], whole[0][1]

    killed = tmp_path / "killed"
    # "epoch 1/2:" is printed once the epoch's checkpoint is written; 7 steps are left in
    # epoch 2 when its first one is reported.
    interrupted = run_cluster(
        train_command(data_dir, killed, 2),
        tmp_path / "logs",
        kill_when=lambda out: "epoch 2/2 step 1:" in out,
    )
    assert [code for code, _, _ in interrupted] == [-9, -9], interrupted[0][2][-3000:]
    assert "epoch 2/2:" not in interrupted[0][1]
    assert not (killed / "final.keras").exists()

    resumed = run_cluster(train_command(data_dir, killed, 2), tmp_path / "logs")
    for code, _, stderr in resumed:
        assert code == 0, stderr[-3000:]
    assert "after epoch 1, step 8" in resumed[0][1], resumed[0][1]
    assert "epoch 1/2 step" not in resumed[0][1]  # the first epoch is not trained again
    import keras

    import rfcn_tf  # noqa: F401  (registers the model class)

    a = keras.models.load_model(tmp_path / "whole" / "final.keras")
    b = keras.models.load_model(killed / "final.keras")
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 16
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
