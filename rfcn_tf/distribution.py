"""Where training runs: one device, ``MirroredStrategy`` over the GPUs (or N logical CPU
devices), and the mixed-precision policy.

Build and compile the model under ``strategy.scope()``; a dataset batched at
``per_replica_batch × strategy.num_replicas_in_sync`` is split into contiguous slices, one
per replica. ``RFCN.compute_loss`` divides by the replica count and samples every image's
anchors and RoIs by its global index, so a replicated step equals the undivided one (up to
BatchNorm, whose statistics are per replica, as Keras's default). Strategies are
TensorFlow's (imported by ``make_strategy``); ``set_policy`` works on every backend.
"""

from rfcn_tf import _optional

STRATEGIES = ("none", "mirrored", "multi_worker")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name="none", cpu_replicas=None):
    """``"none"``: the default (one device). ``"mirrored"``: ``MirroredStrategy`` on every
    visible GPU, or, with ``cpu_replicas=N`` (or no GPU), on N logical CPU devices (made
    here, so this must run before TensorFlow has run any op; N defaults to 1).
    ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` over the cluster of ``TF_CONFIG``
    (every local GPU, or the CPU, of every worker); train with
    ``rfcn_tf.multi_worker.train_multi_worker``, since ``model.fit`` cannot."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}")
    tf = _optional.tensorflow("tf.distribute strategies (rfcn_tf.distribution.make_strategy)")

    if cpu_replicas is not None and (isinstance(cpu_replicas, bool) or int(cpu_replicas) < 1):
        raise ValueError(f"cpu_replicas must be a positive integer; got {cpu_replicas!r}")
    if name != "mirrored" and cpu_replicas is not None:
        raise ValueError("cpu_replicas needs strategy='mirrored'")
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and cpu_replicas is None:
        return tf.distribute.MirroredStrategy()
    count = int(cpu_replicas or 1)
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured is None or len(configured) != count:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot split the CPU into {count} logical devices: TensorFlow is already "
                "initialised in this process (make the strategy before running any op)"
            ) from error
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(count)])


def set_policy(policy="float32"):
    """Set Keras's global dtype policy (models built afterwards compute in it). Under
    ``mixed_float16`` ``compile`` wraps the optimizer in a ``LossScaleOptimizer``; the
    model keeps its anchors, proposals, PSRoIPool's RoIs, box decoding, NMS and losses in
    float32 either way."""
    import keras

    if policy not in POLICIES:
        raise ValueError(f"mixed precision policy must be one of {POLICIES}; got {policy!r}")
    keras.mixed_precision.set_global_policy(policy)
