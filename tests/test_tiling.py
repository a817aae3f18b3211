"""Tiled inference: the tile grid, boxes mapped back, seam duplicates merged, the real model
and its exports (SavedModel, TFLite, ONNX) through ``predict_tiled``, and the command line."""

import json
import logging
import math

import keras
import numpy as np
import pytest

from rfcn_tf import RFCN, RFCNConfig, predict_tiled, tile_grid
from rfcn_tf.cli import main
from rfcn_tf.export import export_onnx, export_saved_model, export_tflite
from rfcn_tf.loading import Detector, keras_detector, load_detector
from rfcn_tf.tiling import greedy_nms, merge_detections, overlapping_pairs
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen, write_png

NAMES = ["circle", "square", "triangle"]


# ------------------------------------------------------------------------------ the grid
@pytest.mark.parametrize(
    "height,width,tile,overlap",
    [
        (1000, 1000, 192, 0.2),
        (700, 333, (192, 320), 0.25),
        (192, 320, (192, 320), 0.2),
        (150, 2000, 192, 0.5),
        (401, 400, 200, 0.0),
        (999, 37, 64, 0.9),
    ],
)
def test_grid_covers_the_image_with_the_stated_overlap(height, width, tile, overlap):
    windows = tile_grid(height, width, tile, overlap)
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    h, w = min(tile_h, height), min(tile_w, width)
    assert np.all(windows[:, 2] - windows[:, 0] == h) and np.all(windows[:, 3] - windows[:, 1] == w)
    assert windows.min() >= 0 and windows[:, 2].max() == height and windows[:, 3].max() == width
    covered = np.zeros((height, width), bool)
    for y0, x0, y1, x1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    for axis, (length, size, t) in enumerate(((height, h, tile_h), (width, w, tile_w))):
        starts = np.unique(windows[:, axis])
        need = min(math.ceil(overlap * t), size)
        # neighbours overlap by at least ceil(overlap × tile) …
        assert np.all(starts[:-1] + size - starts[1:] >= need)
        # … so any object that long along the axis lies whole in some window
        for begin in range(0, length - need + 1):
            assert np.any((starts <= begin) & (begin + need <= starts + size)), begin
        # and no window more than needed: one fewer cannot keep that overlap
        if len(starts) > 1:
            assert (len(starts) - 2) * (size - need) < length - size


def test_grid_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        tile_grid(100, 100, 50, 1.0)
    with pytest.raises(ValueError, match="tile must be a positive int"):
        tile_grid(100, 100, (50, 0))
    with pytest.raises(ValueError, match="image height must be a positive int"):
        tile_grid(0, 100, 50)


# ------------------------------------------------------------------------------ a fake detector
def scene(height, width, objects):
    """An image where object k (a rectangle ``(y0, x0, y1, x1, label)``) has the value k + 1
    in channel 0 and its label + 1 in channel 1."""
    image = np.zeros((height, width, 3), np.uint8)
    for k, (y0, x0, y1, x1, label) in enumerate(objects):
        image[y0:y1, x0:x1, 0] = k + 1
        image[y0:y1, x0:x1, 1] = label + 1
    return image


def fake_detector(objects, max_detections=100, calls=None):
    """A perfect detector of ``scene``'s rectangles: each visible part's box in the tile's
    pixels, scored by the visible fraction of its object (so a whole view beats a cut one)."""
    areas = [(y1 - y0) * (x1 - x0) for y0, x0, y1, x1, _ in objects]

    def detect(tiles):
        tiles = np.asarray(tiles)
        if calls is not None:
            calls.append(tiles.shape)
        out = {
            "boxes": np.zeros((len(tiles), max_detections, 4), np.float32),
            "confidence": np.zeros((len(tiles), max_detections), np.float32),
            "labels": np.full((len(tiles), max_detections), -1, np.int32),
            "num_detections": np.zeros(len(tiles), np.int32),
        }
        for b, tile in enumerate(tiles):
            found = []
            for k in np.unique(tile[..., 0])[1:].astype(int) - 1:
                ys, xs = np.nonzero(tile[..., 0] == k + 1)
                box = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
                found.append((0.5 * len(ys) / areas[k] + 0.001 * k, box, objects[k][4]))
            found = sorted(found, reverse=True)[:max_detections]
            for r, (score, box, label) in enumerate(found):
                out["boxes"][b, r], out["confidence"][b, r], out["labels"][b, r] = box, score, label
            out["num_detections"][b] = len(found)
        return out

    return Detector(detect, RFCNConfig.small(num_classes=3, max_detections=max_detections), None)


def as_set(out):
    n = out["num_detections"][0]
    return sorted((tuple(np.round(b, 4)), int(l)) for b, l in zip(out["boxes"][0, :n], out["labels"][0, :n]))


def expected_set(objects):
    return sorted((tuple(float(v) for v in o[:4]), o[4]) for o in objects)


# Tiles of 100 × 100 at overlap 0.3 on 250 × 330: y from 0, 50, 100, 150; x from 0, 58,
# 115, 172, 230.
OBJECTS = [
    (10, 10, 30, 40, 0),  # inside the first tile only
    (80, 80, 95, 97, 1),  # in the overlap of four tiles, whole in each
    (40, 90, 60, 120, 2),  # cut by y = 50, x = 100 and x = 115; whole in one tile
    (200, 300, 250, 330, 0),  # at the image's corner: touching its edge is no cut
    (140, 160, 170, 176, 1),  # cut by y = 150 and x = 172; whole in one tile
    (120, 5, 135, 25, 2),
]


def test_boxes_are_mapped_back_to_image_pixels_and_seam_duplicates_merged():
    calls = []
    detector = fake_detector(OBJECTS, calls=calls)
    image = scene(250, 330, OBJECTS)
    out = predict_tiled(detector, image, tile=100, overlap=0.3, batch_size=6)
    assert [c[0] for c in calls] == [6, 6, 6, 2]  # 20 tiles, 6 at a time, all 100 × 100
    assert all(c[1:] == (100, 100, 3) for c in calls)
    assert as_set(out) == expected_set(OBJECTS)  # each object once, exactly its box
    assert out["boxes"].dtype == np.float32 and out["labels"].dtype == np.int32
    assert np.all(np.diff(out["confidence"][0]) <= 0)  # best first


def test_plain_nms_keeps_the_cut_pieces_that_edges_drops():
    detector = fake_detector(OBJECTS)
    image = scene(250, 330, OBJECTS)
    nms = predict_tiled(detector, image, tile=100, overlap=0.3, merge="nms")
    found = as_set(nms)
    assert set(expected_set(OBJECTS)) <= set(found)  # every whole box is there …
    assert len(found) > len(OBJECTS)  # … and cut pieces too (IoU with the whole box < 0.3)
    # With an IoU threshold of 1 nothing merges: every tile's view of every object stays.
    everything = predict_tiled(detector, image, tile=100, overlap=0.3, merge="nms", iou_threshold=1.0)
    views = sum(
        detector(image[None, y0:y1, x0:x1])["num_detections"][0]
        for y0, x0, y1, x1 in tile_grid(250, 330, 100, 0.3)
    )
    assert everything["num_detections"][0] == views > len(found)


def reference_nms(boxes, scores, labels, threshold):
    """Greedy class-wise NMS from the definition, O(N²)."""
    order, kept = np.argsort(-scores, kind="stable"), []
    for i in order:
        ok = True
        for j in kept:
            if labels[j] != labels[i]:
                continue
            lo, hi = np.maximum(boxes[i, :2], boxes[j, :2]), np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None))
            union = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2]) - inter
            if inter / union > threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return np.array(kept)


@pytest.mark.parametrize("seed", range(4))
def test_merge_nms_equals_greedy_nms_from_the_definition(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 300, (400, 2))
    sizes = rng.uniform(5, 60, (400, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    scores, labels = rng.permutation(400) / 400.0, rng.integers(0, 3, 400)
    windows = np.array([[0, 0, 400, 400]])
    for threshold in (0.1, 0.3, 0.6):
        kept = merge_detections(
            boxes,
            scores,
            labels,
            windows,
            np.zeros(400, int),
            (400, 400),
            merge="nms",
            iou_threshold=threshold,
        )
        np.testing.assert_array_equal(kept, reference_nms(boxes, scores, labels, threshold))


def test_overlapping_pairs_are_every_intersecting_pair_of_a_class_once():
    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 200, (150, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 50, (150, 2))], axis=1)
    labels = rng.integers(0, 2, 150)
    i, j, inter = overlapping_pairs(boxes, labels, 250)
    found = {tuple(sorted(p)): a for p, a in zip(zip(i.tolist(), j.tolist()), inter)}
    assert len(found) == len(i)  # each pair once
    expected = {}
    for a in range(150):
        for b in range(a + 1, 150):
            lo, hi = np.maximum(boxes[a, :2], boxes[b, :2]), np.minimum(boxes[a, 2:], boxes[b, 2:])
            area = np.prod(np.clip(hi - lo, 0, None))
            if labels[a] == labels[b] and area > 0:
                expected[a, b] = area
    assert found.keys() == expected.keys() and len(expected) > 20
    blocked = overlapping_pairs(boxes, labels, 250, block=16)  # the sweep in 10 blocks
    for a, b in zip(blocked, (i, j, inter)):
        np.testing.assert_array_equal(a, b)
    for key, area in expected.items():
        assert found[key] == pytest.approx(area)
    assert greedy_nms(np.arange(3), np.array([0, 1]), np.array([1, 2]), 3).tolist() == [True, False, True]


def test_cap_warnings_name_the_flag(caplog):
    objects = [(10 + 20 * r, 10 + 20 * c, 25 + 20 * r, 25 + 20 * c, 0) for r in range(4) for c in range(4)]
    image = scene(100, 100, objects)
    with caplog.at_level(logging.WARNING):
        out = predict_tiled(fake_detector(objects, max_detections=3), image, tile=50, overlap=0.0)
    assert "4 of 4 tiles: reached the cap of 3 detections" in caplog.text  # 4 objects a tile
    assert "--max-detections" in caplog.text
    assert out["num_detections"][0] == 12  # 3 per tile, not capped as a whole
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = predict_tiled(fake_detector(objects), image, tile=50, overlap=0.0, max_detections=7)
    assert out["num_detections"][0] == 7 and out["boxes"].shape == (1, 7, 4)
    assert "tiles: reached" not in caplog.text
    assert "the tiled image (predict_tiled's max_detections): reached the cap of 7" in caplog.text


def test_predict_tiled_refuses_bad_input():
    detector = fake_detector(OBJECTS)
    with pytest.raises(ValueError, match=r"one \[height, width, 3\] RGB image"):
        predict_tiled(detector, np.zeros((2, 50, 50, 3), np.uint8))
    with pytest.raises(ValueError, match="merge must be one of"):
        predict_tiled(detector, np.zeros((50, 50, 3), np.uint8), merge="wbf")
    with pytest.raises(TypeError, match="RFCN model or a Detector"):
        predict_tiled(object(), np.zeros((50, 50, 3), np.uint8))


# ------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(21)
    m = RFCN(config=RFCNConfig.small(num_classes=3, class_names=NAMES))
    sharpen(m, seed=2)
    return m


def test_an_image_of_one_tile_gives_model_predict(model):
    image = random_image(192, 320, 4)  # the default tile: (min_side, max_side)
    out = predict_tiled(model, image)
    expected = model.predict(image[None], verbose=0)
    n = expected["num_detections"][0]
    assert out["num_detections"][0] == n > 10
    np.testing.assert_allclose(out["boxes"][0], expected["boxes"][0, :n], atol=1e-4)
    np.testing.assert_allclose(out["confidence"][0], expected["confidence"][0, :n], atol=1e-6)
    np.testing.assert_array_equal(out["labels"][0], expected["labels"][0, :n])


@pytest.mark.slow
def test_tiles_of_the_real_model_are_shifted_into_the_image(model):
    """Without merging (IoU threshold 1), the result is every tile's own detections moved by
    the tile's corner, best first."""
    image = random_image(300, 500, 5)
    out = predict_tiled(
        model, image, tile=(160, 256), overlap=0.0, merge="nms", iou_threshold=1.0, batch_size=3
    )
    boxes, scores = [], []
    for y0, x0, y1, x1 in tile_grid(300, 500, (160, 256), 0.0):
        part = model.predict(image[None, y0:y1, x0:x1], verbose=0)
        n = part["num_detections"][0]
        boxes.append(part["boxes"][0, :n] + [y0, x0, y0, x0])
        scores.append(part["confidence"][0, :n])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    order = np.argsort(-scores, kind="stable")
    assert out["num_detections"][0] == len(scores) > 100
    np.testing.assert_allclose(out["confidence"][0], scores[order], atol=1e-6)
    np.testing.assert_allclose(out["boxes"][0], boxes[order], atol=1e-3)


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """The model as a SavedModel and as TFLite and ONNX exports of a 96 × 128 input."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "saved_model": export_saved_model(model, root / "saved"),
        "tflite": export_tflite(model, root / "tflite", input_size=(96, 128)),
        "onnx": export_onnx(model, root / "onnx", input_size=(96, 128)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_loaded_exports_detect_tiled_like_the_model(fmt, model, exports):
    detector, names = load_detector(exports[fmt])
    assert names == NAMES
    image = random_image(180, 300, 6)
    tile = None if fmt != "saved_model" else (96, 128)  # an export's own input size by default
    out = predict_tiled(detector, image, tile=tile, batch_size=2)
    expected = predict_tiled(model, image, tile=(96, 128), batch_size=2)
    assert expected["num_detections"][0] > 50
    assert_same_detections_any_order(out, expected, box_atol=0.05, score_atol=1e-4)


# ------------------------------------------------------------------------------ memory
def test_a_large_image_is_read_window_by_window():
    """The detector is handed slices of the image, never a float copy of it: a read-only
    uint8 view (zero strides: no memory behind it) works and its batches are uint8 tiles."""
    seen = []
    detector = fake_detector([])
    inner = detector._fn
    detector._fn = lambda tiles: (seen.append((tiles.dtype, tiles.shape)), inner(tiles))[1]
    image = np.lib.stride_tricks.as_strided(
        np.zeros(3, np.uint8), (5000, 7000, 3), (0, 0, 1), writeable=False
    )
    out = predict_tiled(detector, image, tile=1000, overlap=0.1, batch_size=8)
    assert out["num_detections"][0] == 0
    assert all(dtype == np.uint8 and shape[1:] == (1000, 1000, 3) for dtype, shape in seen)
    assert sum(shape[0] for _, shape in seen) == len(tile_grid(5000, 7000, 1000, 0.1))


# ------------------------------------------------------------------------------ command line
def test_predict_and_evaluate_with_tile_on_the_command_line(model, tmp_path, capsys):
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    image = random_image(250, 420, 9)
    path = write_png(tmp_path / "large.png", image)
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--model",
                str(keras_path),
                path,
                "--output-dir",
                str(out_dir),
                "--tile",
                "128x160",
                "--overlap",
                "0.25",
                "--batch-size",
                "3",
            ]
        )
        == 0
    )
    result = json.load(open(out_dir / "detections.json"))[0]
    # --score-threshold (0.3) applies to each tile's detections, before merging
    reporting, _ = keras_detector(model, score_threshold=0.3)
    expected = predict_tiled(reporting, image, tile=(128, 160), overlap=0.25)
    assert len(result["detections"]) == expected["num_detections"][0] > 0
    np.testing.assert_allclose([d["box"] for d in result["detections"]], expected["boxes"][0], atol=1e-3)
    assert min(d["score"] for d in result["detections"]) >= 0.3
    assert (
        main(["predict", "--model", str(keras_path), path, "--output-dir", str(out_dir), "--overlap", "0.3"])
        == 2
    )
    assert "--overlap applies with --tile" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                "--model",
                str(keras_path),
                path,
                "--output-dir",
                str(out_dir),
                "--tile",
                "auto",
                "--max-pixels",
                "1000",
            ]
        )
        == 1
    )  # refused: too many pixels
    assert "more than the limit of 1000" in json.load(open(out_dir / "detections.json"))[0]["error"]


def test_evaluate_refuses_a_scale_with_tile_before_loading_anything(tmp_path, capsys):
    """Each tile is seen at the model's own scale: --min-side/--max-side with --tile is a
    mistake, refused before the model or the data is read (neither exists here)."""
    missing = str(tmp_path / "missing.keras")
    for scale in (["--min-side", "256"], ["--max-side", "400"]):
        args = ["evaluate", "--model", missing, "--dataset", str(tmp_path / "none"), "--tile", "128", *scale]
        assert main(args) == 2
        error = capsys.readouterr().err
        assert "--min-side/--max-side do not apply with --tile" in error.splitlines()[0], error
