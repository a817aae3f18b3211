"""``MeanAveragePrecisionCallback(log_dir=...)``: the event file holds the AP scalars the
callback computed, the precision–recall pictures and the validation pictures."""

import glob
import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rfcn_tf.evaluation import MeanAveragePrecisionCallback
from rfcn_tf.evaluation.tensorboard import GAP
from rfcn_tf.visualize import class_color, draw_detections, precision_recall_figure
from tests.test_evaluation_model import ELSEWHERE, OBJECT, FixedBoxDetector

SIZE = 32


def dataset(scale=1.0, num_images=4, batch_size=2):
    """``test_evaluation_model``'s data (one object of class 0 at OBJECT per image, a
    difficult one at ELSEWHERE in image 0), with random pixels, so pictures differ."""
    rng = np.random.default_rng(0)
    boxes = np.full((num_images, 3, 4), -1.0, np.float32)
    labels = np.full((num_images, 3), -1, np.int32)
    difficult = np.zeros((num_images, 3), bool)
    boxes[:, 0], labels[:, 0] = OBJECT, 0
    boxes[0, 1], labels[0, 1], difficult[0, 1] = ELSEWHERE, 0, True
    images = rng.integers(0, 256, (num_images, SIZE, SIZE, 3)).astype(np.float32)
    inputs = {"images": images, "image_sizes": np.full((num_images, 2), SIZE, np.int32)}
    # Targets in batch pixels; original_scale divides them and the detections by the scale.
    targets = {
        "boxes": boxes,
        "labels": labels,
        "difficult": difficult,
        "scales": np.full(num_images, scale, np.float32),
    }
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size), images


def read_events(log_dir):
    """``{tag: {step: value}}``: scalars as floats, images as ``uint8 [H, W, 3]``."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                data = tf.make_ndarray(value.tensor)
                if data.dtype == object:  # an image: [width, height, PNG bytes]
                    assert int(data[0]) > 0 and int(data[1]) > 0
                    picture = np.asarray(Image.open(io.BytesIO(data[2])).convert("RGB"))
                    assert picture.shape[:2] == (int(data[1]), int(data[0]))
                    data = picture
                else:
                    data = float(data)
                found.setdefault(value.tag, {})[event.step] = data
    return found


def test_pictures_and_scalars_of_a_known_evaluation(tmp_path):
    data, images = dataset()
    log_dir = str(tmp_path / "logs")
    callback = MeanAveragePrecisionCallback(
        data, class_names=["thing"], verbose=0, log_dir=log_dir, num_images=3, score_threshold=0.6
    )
    callback.set_model(FixedBoxDetector())
    callback.on_epoch_end(0, {})
    callback.on_train_end()
    events = read_events(log_dir)
    assert sorted(events) == [
        "val_AP/thing",
        "val_images/0",
        "val_images/1",
        "val_images/2",
        "val_mAP",
        "val_pr_curve/thing",
    ]
    # By score: ELSEWHERE (0.73) is a false positive in images 1–3 and ignored in image 0
    # (the difficult object); then OBJECT (0.5) is a true positive in all four.
    tp = np.array([0, 0, 0, 1, 1, 1, 1])
    precision, recall = np.cumsum(tp) / np.arange(1, 8), np.cumsum(tp) / 4
    assert events["val_mAP"] == {0: pytest.approx(4 / 7)}
    assert events["val_AP/thing"] == {0: pytest.approx(4 / 7)}
    expected_curve = precision_recall_figure(
        precision, recall, "thing: voc07 AP 0.571, 7 detections", color=class_color(0)
    )
    np.testing.assert_array_equal(events["val_pr_curve/thing"][0], expected_curve)

    for i in range(3):  # batches of 2: the third picture comes from the second batch
        picture = events[f"val_images/{i}"][0]
        assert picture.shape == (SIZE, 2 * SIZE + GAP, 3)
        truth = [OBJECT] + ([ELSEWHERE] if i == 0 else [])
        np.testing.assert_array_equal(
            picture[:, :SIZE],
            draw_detections(images[i], truth, None, [0] * len(truth), class_names=["thing"]),
        )
        # Score threshold 0.6: ELSEWHERE (0.73) is drawn, OBJECT (0.5) is not.
        np.testing.assert_array_equal(
            picture[:, SIZE + GAP :],
            draw_detections(images[i], [ELSEWHERE], [1 / (1 + np.exp(-1.0))], [0], class_names=["thing"]),
        )
        assert np.all(picture[:, SIZE : SIZE + GAP] == 255)


def test_pictures_are_drawn_in_the_batch_pixels_with_original_scale(tmp_path):
    pictures = []
    for scale, original in ((1.0, False), (2.0, True)):
        data, _ = dataset(scale)
        log_dir = str(tmp_path / f"scale{scale}")
        callback = MeanAveragePrecisionCallback(
            data, verbose=0, original_scale=original, log_dir=log_dir, num_images=1, score_threshold=0.0
        )
        callback.set_model(FixedBoxDetector())
        callback.on_epoch_end(0, {})
        callback.on_train_end()
        pictures.append(read_events(log_dir)["val_images/0"][0])
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_in_fit_the_scalars_are_the_values_the_callback_computed(tmp_path):
    data, _ = dataset()
    model = FixedBoxDetector()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    log_dir = str(tmp_path / "logs")
    callback = MeanAveragePrecisionCallback(
        data, class_names=["thing"], verbose=0, log_dir=log_dir, num_images=2
    )
    model.fit(data, epochs=3, callbacks=[callback], verbose=0, shuffle=False)
    events = read_events(log_dir)
    assert sorted(callback.results) == [0, 1, 2]
    computed = [callback.results[epoch]["per_class"]["thing"] for epoch in range(3)]
    assert len(set(computed)) > 1  # training changed the ranking: the steps differ
    assert events["val_AP/thing"] == {e: pytest.approx(ap) for e, ap in enumerate(computed)}
    assert events["val_mAP"] == {e: pytest.approx(callback.results[e]["mAP"]) for e in range(3)}
    assert sorted(events["val_images/1"]) == [0, 1, 2]
    assert "val_images/2" not in events


def test_bad_num_images_is_refused():
    with pytest.raises(ValueError, match="num_images must be an int >= 0"):
        MeanAveragePrecisionCallback(dataset()[0], num_images=-1)


def test_precision_recall_curves_follow_the_definition():
    from rfcn_tf.evaluation import precision_recall_curves

    # Class 0: two objects; detections scored 0.9 (hit), 0.8 (miss), 0.7 (duplicate of the
    # first: false positive), 0.6 (hit). Class 1: no ground truth. Class 2: one object, no
    # detection.
    a, b = [0, 0, 10, 10], [20, 20, 30, 30]
    detections = [
        {
            "boxes": np.array([a, [40, 40, 50, 50], a, b], float),
            "scores": np.array([0.9, 0.8, 0.7, 0.6]),
            "labels": np.array([0, 0, 0, 0]),
        }
    ]
    ground_truth = [{"boxes": np.array([a, b, b], float), "labels": np.array([0, 0, 2])}]
    curves = precision_recall_curves(detections, ground_truth, num_classes=3, class_names=["x", "y", "z"])
    tp = np.array([1, 0, 0, 1])
    np.testing.assert_allclose(curves["x"][0], np.cumsum(tp) / np.arange(1, 5))
    np.testing.assert_allclose(curves["x"][1], np.cumsum(tp) / 2)
    assert curves["y"] is None
    assert curves["z"][0].size == curves["z"][1].size == 0


def test_precision_recall_figure_puts_the_points_on_the_axes():
    from rfcn_tf.visualize import _PR_LEFT, _PR_RIGHT, _PR_SIZE, _PR_TOP

    height, width = _PR_SIZE
    plot_w = width - _PR_LEFT - _PR_RIGHT
    color = (200, 30, 30)
    figure = precision_recall_figure([1.0, 0.5], [0.5, 1.0], "t", color=color)
    assert figure.shape == (height, width, 3) and figure.dtype == np.uint8
    # (recall 0.5, precision 1) is at the top edge, half-way across the plot.
    assert tuple(figure[_PR_TOP, _PR_LEFT + plot_w // 2]) == color
    assert not np.any(np.all(precision_recall_figure([], [], "t", color=color) == color, axis=-1))
    with pytest.raises(ValueError, match="the same length; got 2 and 1"):
        precision_recall_figure([1.0, 0.5], [0.5])
