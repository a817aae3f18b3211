"""evaluate_model / collect_detections and the mAP callback on tiny detectors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf.evaluation import (
    MeanAveragePrecisionCallback,
    collect_detections,
    evaluate_model,
)

OBJECT = [0.0, 0.0, 10.0, 10.0]
ELSEWHERE = [20.0, 20.0, 30.0, 30.0]


def make_dataset(num_images=4, batch_size=2, box=OBJECT, scale=1.0):
    """One object of class 0 per image at ``box``; targets padded to 3 with -1.

    Image 0 also has a difficult object of class 0 at ELSEWHERE.
    """
    boxes = np.full((num_images, 3, 4), -1.0, np.float32)
    labels = np.full((num_images, 3), -1, np.int32)
    difficult = np.zeros((num_images, 3), bool)
    boxes[:, 0], labels[:, 0] = box, 0
    boxes[0, 1], labels[0, 1], difficult[0, 1] = ELSEWHERE, 0, True
    inputs = {
        "images": np.zeros((num_images, 32, 32, 3), np.float32),
        "image_sizes": np.full((num_images, 2), 32, np.int32),
    }
    targets = {
        "boxes": boxes,
        "labels": labels,
        "difficult": difficult,
        "scales": np.full(num_images, scale, np.float32),
    }
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)


class FixedBoxDetector(keras.Model):
    """Detects OBJECT and ELSEWHERE in every image (class 0), each with a learnable score.

    Starts with ELSEWHERE scored higher (sigmoid(1) vs sigmoid(0)); the loss pushes
    OBJECT's score to 1 and ELSEWHERE's to 0.
    """

    def __init__(self):
        super().__init__()
        self.logits = self.add_weight(
            shape=(2,), initializer=keras.initializers.Constant([0.0, 1.0]), name="logits"
        )

    def call(self, inputs, training=False):
        batch = tf.shape(inputs["images"])[0]
        boxes = tf.tile(tf.constant([[OBJECT, ELSEWHERE]]), [batch, 1, 1])
        confidence = tf.tile(tf.sigmoid(self.logits)[None], [batch, 1])
        return {
            "boxes": boxes,
            "confidence": confidence,
            "labels": tf.zeros([batch, 2], tf.int32),
            "num_detections": tf.fill([batch], 2),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return tf.reduce_mean(tf.square(y_pred["confidence"] - tf.constant([1.0, 0.0])))


def test_fixed_detector_before_training():
    # Per image: ELSEWHERE (0.73) is FP except in image 0, where it overlaps the
    # difficult object and is ignored; OBJECT (0.5) is TP. By score: FP, FP, FP, then
    # 4 TPs → precision 1/4, 2/5, 3/6, 4/7 at recall 1/4 … 1 → VOC07 = 4/7 everywhere.
    result = evaluate_model(FixedBoxDetector(), make_dataset())
    assert result["mAP"] == pytest.approx(4 / 7)
    assert result["num_images"] == 4
    assert result["num_ground_truth"] == {0: 4}


def test_callback_in_fit_feeds_history_and_checkpoint(tmp_path):
    dataset = make_dataset()
    model = FixedBoxDetector()
    # One SGD step already ranks OBJECT above ELSEWHERE, and the gradients keep
    # pushing the two logits apart, so both epochs end with every TP first: AP 1.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=10.0))
    path = tmp_path / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(path), monitor="val_mAP", mode="max", save_best_only=True,
        save_weights_only=True,
    )  # fmt: skip
    callback = MeanAveragePrecisionCallback(dataset, class_names=["thing"], verbose=0)
    # The callback comes before ModelCheckpoint so that the checkpoint sees val_mAP.
    history = model.fit(dataset, epochs=2, callbacks=[callback, checkpoint], verbose=0, shuffle=False)
    assert history.history["val_mAP"] == [1.0, 1.0]
    assert history.history["val_AP/thing"] == [1.0, 1.0]
    assert checkpoint.best == 1.0
    assert path.exists()
    assert sorted(callback.results) == [0, 1]
    assert callback.last_result["per_class"] == {"thing": 1.0}


def test_callback_every_n_epochs_and_coco_keys():
    model = FixedBoxDetector()
    callback = MeanAveragePrecisionCallback(
        make_dataset(), every_n_epochs=2, metric="coco", verbose=0, log_per_class=False
    )
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs == {}
    callback.on_epoch_end(1, logs)
    assert logs["val_mAP"] == logs["val_AP"] == callback.last_result["mAP"]
    assert {"val_AP50", "val_AP75", "val_AR100", "val_AP_small"} <= set(logs)
    assert not any(k.startswith("val_AP/") for k in logs)


def test_callback_rejects_bad_options():
    with pytest.raises(ValueError, match="every_n_epochs must be an int >= 1"):
        MeanAveragePrecisionCallback(make_dataset(), every_n_epochs=0)
    with pytest.raises(ValueError, match="metric must be one of"):
        MeanAveragePrecisionCallback(make_dataset(), metric="map")


def padded_detector(box):
    """Plain callable: one real detection at ``box``, then padding that would be FPs."""

    def detect(inputs):
        batch = int(inputs["images"].shape[0])
        boxes = np.tile(np.array([[box, ELSEWHERE, ELSEWHERE]], np.float32), (batch, 1, 1))
        return {
            "boxes": boxes,
            "confidence": np.tile([[0.5, 0.9, 0.9]], (batch, 1)),
            "labels": np.zeros((batch, 3), np.int32),
            "num_detections": np.ones(batch, np.int32),
        }

    return detect


def test_callable_keeps_only_num_detections():
    # Were the padded ELSEWHERE entries (score 0.9) counted, images 1-3 would rank FPs
    # first and AP would drop below 1.
    result = evaluate_model(padded_detector(OBJECT), make_dataset(num_images=5))
    assert result["mAP"] == 1.0
    assert result["num_detections"] == {0: 5}
    assert result["num_images"] == 5


def test_original_scale_divides_both_sides():
    # 40×40 in the resized image (area 1600, COCO "medium") is 20×20 originally
    # (area 400, "small") with scale 2.
    big = [0.0, 0.0, 40.0, 40.0]
    dataset = make_dataset(box=big, scale=2.0)
    detections, ground_truth = collect_detections(padded_detector(big), dataset, original_scale=True)
    np.testing.assert_allclose(detections[1]["boxes"], [[0, 0, 20, 20]])
    np.testing.assert_allclose(ground_truth[1]["boxes"], [[0, 0, 20, 20]])
    np.testing.assert_array_equal(ground_truth[0]["difficult"], [False, True])

    resized = evaluate_model(padded_detector(big), dataset, metric="coco")
    original = evaluate_model(padded_detector(big), dataset, metric="coco", original_scale=True)
    assert resized["coco"]["AP_medium"] == original["coco"]["AP_small"] == 1.0
    assert math.isnan(resized["coco"]["AP_small"])
    assert math.isnan(original["coco"]["AP_medium"])


def test_steps_limits_batches():
    detections, _ = collect_detections(padded_detector(OBJECT), make_dataset(6), steps=2)
    assert len(detections) == 4


def test_bad_model_or_dataset():
    dataset = make_dataset()
    with pytest.raises(TypeError, match="model must be a keras.Model or a callable"):
        evaluate_model("model", dataset)

    def incomplete(inputs):
        out = padded_detector(OBJECT)(inputs)
        del out["num_detections"]
        return out

    with pytest.raises(ValueError, match=r"model's output is missing \['num_detections'\]"):
        evaluate_model(incomplete, dataset)
    no_scales = dataset.map(lambda x, y: (x, {k: v for k, v in y.items() if k != "scales"}))
    with pytest.raises(ValueError, match=r"original_scale=True needs targets\['scales'\]"):
        evaluate_model(padded_detector(OBJECT), no_scales, original_scale=True)
    images_only = dataset.map(lambda x, y: x)
    with pytest.raises(ValueError, match=r"batch 0 of the dataset must be \(inputs, targets\)"):
        evaluate_model(padded_detector(OBJECT), images_only)
