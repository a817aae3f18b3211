"""Training end to end: fit, OHEM/random sampling, degenerate targets, fine-tuning, resume."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.data import load_examples, make_pipeline
from rfcn_tf.evaluation import evaluate_model
from rfcn_tf.model import LOSS_NAMES
from rfcn_tf.training import freeze_stages, make_optimizer, with_num_classes


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    examples, names = load_examples("rfcn_shapes/tiny", "train", data_dir=data_dir)
    return examples, names


def batches(examples, count, batch_size=4, side=128):
    return make_pipeline(examples.take(count), batch_size, min_side=side, max_side=side).cache()


def small(names, **overrides):
    return RFCN(config=RFCNConfig.small(num_classes=len(names), class_names=tuple(names), **overrides))


def all_finite(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_fit_lowers_the_loss_and_logs_named_losses(tiny_shapes):
    examples, names = tiny_shapes
    data = batches(examples, 8)
    model = small(names)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(data, verbose=0, return_dict=True)
    history = model.fit(data.repeat(3), epochs=4, verbose=0)
    after = model.evaluate(data, verbose=0, return_dict=True)
    for name in LOSS_NAMES + ("loss",):
        assert name in history.history and name in after
    assert after["loss"] < 0.7 * before["loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]


def min_box_side(example):
    box = example["boxes"]
    return tf.reduce_min(tf.minimum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]))


def test_overfits_a_handful_of_images(tiny_shapes):
    examples, names = tiny_shapes
    # At 192 px (the small config's scale: anchors from 24 px) and without objects under
    # 16 px: a 12 px object made the result depend on the initial weights (0.73 in some
    # test orders).
    data = batches(examples.filter(lambda e: min_box_side(e) >= 16), 4, side=192)
    model = small(names)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(data.repeat(), epochs=6, steps_per_epoch=40, verbose=0)
    result = evaluate_model(model, data, class_names=names)
    assert result["mAP"] >= 0.9, (result["mAP"], result["per_class"])


@pytest.mark.parametrize("sampler", ["ohem", "random"])
def test_images_without_objects_or_with_tiny_objects_train_without_nan(sampler):
    images = np.random.default_rng(0).uniform(0, 255, (3, 96, 96, 3)).astype(np.float32)
    boxes = -np.ones((3, 2, 4), np.float32)
    labels = -np.ones((3, 2), np.int32)
    boxes[1, 0] = [10, 10, 11, 11]  # a 1×1 px object
    labels[1, 0] = 2
    boxes[2, 0] = [50, 40, 50, 60]  # zero-height: a degenerate box
    labels[2, 0] = 0
    model = small(["a", "b", "c"], roi_sampler=sampler)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    for _ in range(3):
        logs = model.train_on_batch(images, {"boxes": boxes, "labels": labels}, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert all_finite(model)
    empty = model.train_on_batch(images[:1], {"boxes": boxes[:1], "labels": labels[:1]}, return_dict=True)
    assert np.isfinite(empty["loss"])


def test_labels_out_of_range_raise_during_training():
    model = small(["a", "b"])
    model.compile(optimizer="sgd")
    images = np.zeros((1, 64, 64, 3), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be in 0..1"):
        model.train_on_batch(images, {"boxes": np.array([[[1, 1, 20, 20]]], np.float32),
                                      "labels": np.array([[5]], np.int32)})


def test_fine_tuning_to_a_different_class_count(tiny_shapes):
    examples, names = tiny_shapes
    source = small(names)
    target = with_num_classes(source, 2, ["thing", "other"])
    assert target.config.num_classes == 2 and target.config.class_names == ("thing", "other")
    kept = replaced = 0
    old = {v.path: v.numpy() for v in source.weights}
    for v in target.weights:
        if "class_maps" in v.path:
            assert v.shape[-1] == 3 * 3 * 3 if v.path.endswith("bias") else v.shape[-1] == 27
            replaced += 1
        else:
            np.testing.assert_array_equal(v.numpy(), old[v.path])
            kept += 1
    assert replaced == 2 and kept > 50
    with pytest.raises(ValueError, match="class names"):
        with_num_classes(source, 3, ["one"])
    # The new model trains on labels of its own classes.
    target.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = target.train_on_batch(np.zeros((1, 64, 64, 3), np.float32),
                                 {"boxes": np.array([[[5, 5, 40, 40]]], np.float32),
                                  "labels": np.array([[1]], np.int32)}, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_freeze_stages():
    model = small(["a"])
    freeze_stages(model, 3)
    trunk = {layer.name: layer.trainable for layer in model.trunk.layers}
    assert not trunk["conv1_conv"] and not trunk["conv2_1_conv"] and not trunk["conv3_2_conv"]
    assert trunk["conv4_1_conv"] and model.head.conv5.get_layer("conv5_1_conv").trainable
    freeze_stages(model, 0)
    assert all(layer.trainable for layer in model.trunk.layers)
    with pytest.raises(ValueError, match="stages"):
        freeze_stages(model, 6)


def test_paper_optimizer_schedule_and_weight_decay():
    optimizer = make_optimizer(1e-3, boundaries=[20000], clipnorm=10.0)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 5e-4 and optimizer.clipnorm == 10.0
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(20001)) == pytest.approx(1e-4)
    bias = keras.Variable(np.zeros(3, np.float32), name="bias")
    kernel = keras.Variable(np.zeros(3, np.float32), name="kernel")
    assert not optimizer._use_weight_decay(bias) and optimizer._use_weight_decay(kernel)


def test_resume_from_backup_continues_identically(tiny_shapes, tmp_path):
    examples, names = tiny_shapes
    data = batches(examples, 8)

    def fresh(seed):
        keras.utils.set_random_seed(seed)
        model = small(names)
        model.compile(optimizer=make_optimizer(1e-3))
        return model

    straight = fresh(0)
    straight.fit(data, epochs=2, verbose=0)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = fresh(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(data, epochs=2, verbose=0, callbacks=[backup, Interrupt()])
    resumed = fresh(99)  # different initial weights: everything must come from the backup
    resumed.fit(data, epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations)
    # Equal up to float rounding (multi-threaded CPU reductions are not bit-exact).
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_one_training_step_of_full_resnet101_at_600x1000():
    model = RFCN(num_classes=20, backbone="resnet101")
    model.compile(optimizer=make_optimizer())
    image = np.random.default_rng(0).uniform(0, 255, (1, 600, 1000, 3)).astype(np.float32)
    targets = {"boxes": np.array([[[100, 200, 400, 600], [50, 50, 150, 180]]], np.float32),
               "labels": np.array([[3, 14]], np.int32)}
    before = model.head.class_maps.get_weights()[0].copy()
    logs = model.train_on_batch(image, targets, return_dict=True)
    assert all(np.isfinite(logs[name]) for name in LOSS_NAMES)
    assert not np.array_equal(before, model.head.class_maps.get_weights()[0])
