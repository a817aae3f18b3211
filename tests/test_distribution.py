"""``model.fit`` under ``tf.distribute.MirroredStrategy`` (two logical CPU replicas).

Keras scales the loss for distribution only if ``compute_loss`` divides by the replica
count: a missing division would sum the replicas' gradients (a 2× step), a double one would
halve it. The check runs in a subprocess because logical devices must be configured before
TensorFlow starts."""

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from rfcn_tf import RFCN, RFCNConfig

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (4, 96, 96, 3)).astype(np.float32)
boxes = np.tile(np.array([[[10, 10, 50, 60], [40, 30, 90, 70]]], np.float32), (4, 1, 1))
labels = np.tile(np.array([[1, 2]], np.int32), (4, 1))

def one_step(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = RFCN(config=RFCNConfig.small(num_classes=3))
        model.compile(optimizer=keras.optimizers.SGD(0.01))
    before = [v.numpy() for v in model.trainable_variables]
    data = tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "labels": labels})).batch(4)
    loss = model.fit(data, epochs=1, verbose=0).history["loss"][0]
    update = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
    return loss, float(np.sqrt(sum(np.sum(u * u) for u in update)))

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single_loss, single_norm = one_step(tf.distribute.get_strategy())
mirrored_loss, mirrored_norm = one_step(mirrored)
print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "single_loss": single_loss,
                  "mirrored_loss": mirrored_loss, "norm_ratio": mirrored_norm / single_norm}))
'''


def test_mirrored_strategy_trains_like_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # Each replica normalises BatchNorm and its sampled anchors/RoIs over its own 2 images,
    # so the numbers differ a little; a scaling error would make the step 2× or 0.5×.
    assert abs(result["mirrored_loss"] - result["single_loss"]) < 0.05 * result["single_loss"], result
    assert 0.8 < result["norm_ratio"] < 1.25, result
