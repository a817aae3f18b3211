"""Training end to end: fit, OHEM/random sampling, degenerate targets, fine-tuning, resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig
from rfcn_tf.backup import CrashSafeBackup
from rfcn_tf.data import load_examples, make_pipeline
from rfcn_tf.evaluation import evaluate_model
from rfcn_tf.model import LOSS_NAMES
from rfcn_tf.training import choose_optimizer, freeze_stages, make_optimizer, with_num_classes


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    examples, names = load_examples("rfcn_shapes/tiny", "train", data_dir=data_dir)
    return examples, names


def batches(examples, count, batch_size=4, side=128):
    return make_pipeline(examples.take(count), batch_size, min_side=side, max_side=side).cache()


def small(names, side=128, **overrides):
    """The small config at the batches' scale (so the model's own resize is the identity)."""
    return RFCN(
        config=RFCNConfig.small(
            num_classes=len(names), class_names=tuple(names), min_side=side, max_side=side, **overrides
        )
    )


def all_finite(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def overfitted(tiny_shapes):
    """A small model trained on 4 images at 192 px (the small config's scale: anchors from
    24 px) without objects under 16 px (a 12 px object made the result depend on the
    initial weights) → ``(model, data, names)``."""
    examples, names = tiny_shapes
    keras.utils.set_random_seed(1234)
    data = batches(examples.filter(lambda e: min_box_side(e) >= 16), 4, side=192)
    model = small(names, side=192)
    # The recipe (AdamW, ÷10 for the last eighth) over 400 steps: mAP 1.0 for seeds 1–4;
    # constant Adam 2e-3 over 240 steps sometimes ended at 0.64.
    model.compile(optimizer=make_optimizer(2e-3, optimizer="adamw", total_steps=400))
    model.fit(data.repeat(), epochs=8, steps_per_epoch=50, verbose=0)
    return model, data, names


@pytest.mark.slow
def test_overfits_a_handful_of_images(overfitted):
    model, data, names = overfitted
    result = evaluate_model(model, data, class_names=names)
    assert result["mAP"] >= 0.9, (result["mAP"], result["per_class"])


def _iou(a, b):
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.mark.slow
def test_a_4x_upscaled_image_gives_the_same_detections(overfitted):
    """The model resizes every image to its own scale and returns boxes in the input's
    pixels: the 4× copy of an image finds the same objects, at 4× the coordinates."""
    model, data, _ = overfitted
    images = next(iter(data))[0]["images"].numpy()
    found = 0
    for image in images:
        big = np.repeat(np.repeat(image, 4, axis=0), 4, axis=1)  # 768 × 768
        small_out = model.predict(image[None], verbose=0)
        big_out = model.predict(big[None], verbose=0)
        keep = small_out["confidence"][0] >= 0.5
        keep_big = big_out["confidence"][0] >= 0.5
        assert keep.sum() == keep_big.sum() > 0
        for box, label in zip(small_out["boxes"][0][keep], small_out["labels"][0][keep]):
            ious = [_iou(box, other / 4) for other in big_out["boxes"][0][keep_big]]
            best = int(np.argmax(ious))
            assert ious[best] >= 0.7 and big_out["labels"][0][keep_big][best] == label
            found += 1
    assert found >= 4


def test_a_photo_runs_at_the_model_scale_whatever_its_size():
    """A 6000×4000 photo and its 600×900 copy reach the backbone at the same size, so
    they cost about the same (timings: benchmarks/bench_scale.py)."""
    model = RFCN(config=RFCNConfig.small(num_classes=1))  # 192 / 320
    backbone_input = keras.Model(model.input, model.get_layer("preprocess").output)
    big = backbone_input({"images": np.zeros((1, 4000, 6000, 3), np.uint8), "image_sizes": None})
    copy = backbone_input({"images": np.zeros((1, 400, 600, 3), np.uint8), "image_sizes": None})
    assert big.shape == copy.shape == (1, 192, 288, 3)


@pytest.mark.slow
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


@pytest.mark.slow
def test_labels_out_of_range_raise_during_training():
    model = small(["a", "b"])
    model.compile(optimizer="sgd")
    images = np.zeros((1, 64, 64, 3), np.float32)
    box = np.array([[[1, 1, 20, 20]]], np.float32)
    # Arrays: refused before the step, the first line naming the value and where it is.
    with pytest.raises(
        ValueError,
        match=r"^target labels must be in 0\.\.1 \(or -1 for padding\); got 5 at \[image, row\] = \[0, 0\]$",
    ):
        model.train_on_batch(images, {"boxes": box, "labels": np.array([[5]], np.int32)})
    nan_box = np.array([[[1, np.nan, 20, 20]]], np.float32)
    with pytest.raises(
        ValueError,
        match=r"^target boxes contain NaN or Inf: \[1\.0, nan, 20\.0, 20\.0\] at \[image, row\] = \[0, 0\]$",
    ):
        model.fit(images, {"boxes": nan_box, "labels": np.array([[1]], np.int32)}, verbose=0)
    with pytest.raises(ValueError, match=r"^target labels must be in 0\.\.1"):
        model.evaluate(images, {"boxes": box, "labels": np.array([[-2]], np.int32)}, verbose=0)
    # A padding row (label -1) may hold anything.
    model.train_on_batch(images, {"boxes": nan_box, "labels": np.array([[-1]], np.int32)})
    # A dataset: TensorFlow's graph checks it.
    data = tf.data.Dataset.from_tensors((images, {"boxes": box, "labels": np.array([[5]], np.int32)}))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be in 0..1"):
        model.fit(data, verbose=0, shuffle=False)


@pytest.mark.slow
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
    logs = target.train_on_batch(
        np.zeros((1, 64, 64, 3), np.float32),
        {"boxes": np.array([[[5, 5, 40, 40]]], np.float32), "labels": np.array([[1]], np.int32)},
        return_dict=True,
    )
    assert np.isfinite(logs["loss"])


def test_freeze_stages():
    model = small(["a"])
    freeze_stages(model, 3)
    trunk = {layer.name: layer.trainable for layer in model.trunk.layers}
    assert not trunk["conv1_conv"] and not trunk["conv2_1_conv"] and not trunk["conv3_2_conv"]
    assert trunk["conv4_1_conv"] and model.conv5.get_layer("conv5_1_conv").trainable
    freeze_stages(model, 0)
    assert all(layer.trainable for layer in model.trunk.layers)
    with pytest.raises(ValueError, match="stages"):
        freeze_stages(model, 6)


@pytest.mark.slow
def test_faster_rcnn_head_trains_its_batchnorm():
    """conv5 runs per RoI in the training step; its BatchNorm must see training=True."""
    model = small(["a", "b"], head="faster_rcnn")
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    norms = [l for l in model.conv5.layers if isinstance(l, keras.layers.BatchNormalization)]
    before = [l.moving_mean.numpy().copy() for l in norms]
    images = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    model.train_on_batch(
        images,
        {
            "boxes": np.array([[[5, 5, 60, 70]], [[30, 20, 90, 110]]], np.float32),
            "labels": np.array([[0], [1]], np.int32),
        },
    )
    assert all(not np.allclose(b, l.moving_mean.numpy()) for b, l in zip(before, norms))


def test_recipe_defaults_schedules_and_warmup():
    assert choose_optimizer("auto", None) == "adamw"
    assert choose_optimizer("auto", "imagenet") == "sgd"
    assert choose_optimizer("sgd", None) == "sgd"
    with pytest.raises(ValueError, match="optimizer"):
        choose_optimizer("adam", None)
    adamw = make_optimizer(2e-3, optimizer="adamw", total_steps=800)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 1e-4
    rate = adamw._learning_rate
    assert float(rate(699)) == pytest.approx(2e-3) and float(rate(701)) == pytest.approx(2e-4)
    sgd = make_optimizer(optimizer="sgd", total_steps=300)  # the paper's drop at 2/3
    assert float(sgd._learning_rate(199)) == pytest.approx(1e-3)
    assert float(sgd._learning_rate(201)) == pytest.approx(1e-4)
    cosine = make_optimizer(1e-3, optimizer="adamw", total_steps=100, schedule="cosine")._learning_rate
    assert float(cosine(0)) == pytest.approx(1e-3) and float(cosine(100)) == pytest.approx(0, abs=1e-9)
    assert float(cosine(50)) == pytest.approx(5e-4, rel=1e-3)
    warm = make_optimizer(1e-3, optimizer="adamw", total_steps=110, warmup_steps=10)._learning_rate
    assert float(warm(0)) == pytest.approx(1e-4) and float(warm(5)) == pytest.approx(5.5e-4)
    assert float(warm(10)) == pytest.approx(1e-3) and float(warm(109)) == pytest.approx(1e-4)
    assert isinstance(make_optimizer(optimizer="sgd"), keras.optimizers.SGD)  # constant rate
    with pytest.raises(ValueError, match="cosine schedule needs total_steps"):
        make_optimizer(schedule="cosine")


@pytest.mark.slow
def test_optimizer_with_warmup_round_trips_in_a_keras_file(tmp_path):
    model = small(["a"])
    model.compile(optimizer=make_optimizer(1e-3, optimizer="adamw", total_steps=20, warmup_steps=4))
    model.train_on_batch(
        np.zeros((1, 64, 64, 3), np.float32),
        {"boxes": np.array([[[5, 5, 40, 40]]], np.float32), "labels": np.array([[0]], np.int32)},
    )
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    for step in (0, 3, 10, 19):
        assert float(again.optimizer._learning_rate(step)) == pytest.approx(
            float(model.optimizer._learning_rate(step))
        )


@pytest.mark.slow
def test_bounding_box_format_is_honoured_in_training_and_evaluation(tiny_shapes, overfitted):
    """The same (trained) weights as a yxyx and as an xywh model, each fed and scored in
    its own format, give the same losses and the same mAP."""
    examples, _ = tiny_shapes
    yxyx, _, names = overfitted
    xywh = RFCN(config=yxyx.config.replace(bounding_box_format="xywh"))
    xywh.set_weights(yxyx.get_weights())
    results = []
    for model in (yxyx, xywh):
        data = make_pipeline(
            examples.take(8),
            4,
            min_side=192,
            max_side=192,
            bounding_box_format=model.config.bounding_box_format,
        )
        model.compile(optimizer="sgd")
        losses = model.evaluate(data, verbose=0, return_dict=True)
        results.append((losses, evaluate_model(model, data, class_names=names)))
    (loss_a, map_a), (loss_b, map_b) = results
    for name in LOSS_NAMES:
        assert loss_a[name] == pytest.approx(loss_b[name], rel=1e-4, abs=1e-6)
    assert map_a["mAP"] == pytest.approx(map_b["mAP"], abs=1e-6) and map_a["mAP"] > 0.3
    assert map_a["per_class"] == pytest.approx(map_b["per_class"], abs=1e-6)


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


@pytest.mark.slow
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

    backup = CrashSafeBackup(str(tmp_path / "backup"))
    interrupted = fresh(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(data, epochs=2, verbose=0, callbacks=[backup, Interrupt()])
    resumed = fresh(99)  # different initial weights: everything must come from the backup
    resumed.fit(data, epochs=2, verbose=0, callbacks=[CrashSafeBackup(str(tmp_path / "backup"))])
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations)
    # Equal up to float rounding (multi-threaded CPU reductions are not bit-exact; a weight
    # of -0.0897 once differed by 2.5e-5). Bit-equality with op determinism: test_resume.py.
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_one_training_step_of_full_resnet101_at_600x1000():
    model = RFCN(num_classes=20, backbone="resnet101")
    model.compile(optimizer=make_optimizer())
    image = np.random.default_rng(0).uniform(0, 255, (1, 600, 1000, 3)).astype(np.float32)
    targets = {
        "boxes": np.array([[[100, 200, 400, 600], [50, 50, 150, 180]]], np.float32),
        "labels": np.array([[3, 14]], np.int32),
    }
    before = model.get_layer("class_maps").get_weights()[0].copy()
    logs = model.train_on_batch(image, targets, return_dict=True)
    assert all(np.isfinite(logs[name]) for name in LOSS_NAMES)
    assert not np.array_equal(before, model.get_layer("class_maps").get_weights()[0])
