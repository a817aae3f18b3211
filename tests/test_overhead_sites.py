"""benchmarks/overhead_sites.py: deterministic scenes, boxes on the drawn objects, sites
that differ, and a VOC folder that rfcn_tf reads."""

import numpy as np
import pytest

from rfcn_tf.data import load_examples
from tests.model_helpers import benchmark_module

sites = benchmark_module("overhead_sites")
SMALL = dict(photo_size=(300, 360), object_size=(10, 40))


def test_a_scene_is_a_function_of_seed_site_and_index():
    a = sites.render_scene(0, "A", 0, **SMALL)
    b = sites.render_scene(0, "A", 0, **SMALL)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    other = sites.render_scene(1, "A", 0, **SMALL)
    assert other["image"].shape != a["image"].shape or not np.array_equal(other["image"], a["image"])


def test_boxes_lie_in_the_image_and_frame_the_drawn_bodies():
    rng = np.random.default_rng([5, 0, 0])
    height, width = 320, 340
    ground = sites.scene_ground(rng, "B", height, width)
    objects = sites.place_objects(rng, "B", height, width, (10, 40))
    painted = ground.copy()
    boxes, masks = sites.paint_objects(painted, objects)
    assert len(boxes) == len(objects) > 5
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= height) and np.all(boxes[:, 3] <= width)
    assert np.all(boxes[:, 2:] > boxes[:, :2])
    changed = np.abs(painted - ground).max(axis=-1) > 0
    bodies = np.zeros((height, width), bool)
    for (y0, x0, y1, x1), (my, mx, mask) in zip(boxes.astype(int), masks):
        full = np.zeros((height, width), bool)
        full[my : my + mask.shape[0], mx : mx + mask.shape[1]] = mask
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        assert (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) == (y0, x0, y1, x1)  # tight on the body
        assert changed[full].mean() > 0.99  # the body was drawn there
        bodies |= full
    # No two bodies share a pixel (objects never overlap).
    assert bodies.sum() == sum(int(m.sum()) for _, _, m in masks)
    # Outside the bodies and their anti-aliased rims (one pixel), only shadows changed the
    # ground: darker, never brighter.
    padded = np.pad(bodies, 1)
    rims = np.zeros_like(bodies)
    for dy in range(3):
        for dx in range(3):
            rims |= padded[dy : dy + height, dx : dx + width]
    outside = changed & ~rims
    assert outside.sum() > 100  # there are shadows
    assert np.all(painted[outside] <= ground[outside] + 1e-3)


def test_sites_differ_in_colour_statistics():
    means = {
        site: np.stack(
            [
                sites.render_scene(seed, site, 0, **SMALL)["image"].reshape(-1, 3).mean(axis=0)
                for seed in (0, 1)
            ]
        )
        for site in sites.SITE_KEYS
    }
    for one, other in [("A", "B"), ("A", "C"), ("B", "C")]:
        # Every scene of one site is far (RGB distance of the mean colour) from every scene of the other.
        distances = np.linalg.norm(means[one][:, None] - means[other][None], axis=-1)
        assert distances.min() > 25, (one, other, distances)
    counts = {
        site: len(sites.render_scene(0, site, 0, photo_size=(500, 500))["boxes"]) for site in ("A", "C")
    }
    assert counts["C"] > 1.5 * counts["A"]  # denser


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sites") / "voc")
    splits = sites.make_sites(
        root, photos={"A": 2, "B": 1, "C": 1}, tile=128, photo_size=(260, 300), object_size=(10, 30)
    )
    return root, splits


@pytest.mark.slow
def test_the_folder_loads_with_every_split(folder):
    root, splits = folder
    assert set(splits) == {"train", "val", "test", "test_C", "photos_A", "photos_B", "photos_C"}
    assert len(splits["train"]) + len(splits["val"]) == 2 * 4  # 2 photos × 2 × 2 tiles of 128
    assert not set(splits["train"]) & set(splits["val"])
    for split, ids in splits.items():
        examples, names = load_examples(root, split)
        assert names == ["object"]
        seen = list(examples.as_numpy_iterator())
        assert [e["image_id"].decode() for e in seen] == ids
        for e in seen:
            h, w = e["image"].shape[:2]
            if split.startswith("photos"):
                assert 260 <= h <= 300 and 260 <= w <= 300
            else:
                assert (h, w) == (128, 128)
            assert np.all(e["boxes"][:, 2] <= h) and np.all(e["boxes"][:, 3] <= w)


def test_tiles_hold_the_photo_objects_they_cut(folder):
    root, _ = folder
    scene = sites.render_scene(0, "B", 0, photo_size=(260, 300), object_size=(10, 30))
    boxes = scene["boxes"]
    examples, _ = load_examples(root, "test")
    tiles = {e["image_id"].decode(): e for e in examples.as_numpy_iterator()}
    for tile_id, e in tiles.items():
        ty, tx = int(tile_id[-5:-3]), int(tile_id[-2:])
        y0, x0 = 128 * ty, 128 * tx
        # Each whole object inside the tile appears in it with the same box.
        inside = boxes[
            (boxes[:, 0] >= y0) & (boxes[:, 1] >= x0) & (boxes[:, 2] <= y0 + 128) & (boxes[:, 3] <= x0 + 128)
        ]
        local = inside - np.array([y0, x0, y0, x0], np.float32)
        for box in local:
            assert np.any(np.all(np.abs(e["boxes"] - box) < 1e-4, axis=1)), (tile_id, box)
        np.testing.assert_array_equal(e["image"].shape, (128, 128, 3))


def test_a_tile_keeps_the_visible_part_and_marks_mostly_hidden_objects_difficult():
    square = np.ones((10, 10), bool)
    boxes = np.array([[120, 10, 130, 20], [124, 40, 134, 50], [140, 60, 150, 70], [5, 5, 15, 15]], np.float32)
    masks = [(int(b[0]), int(b[1]), square) for b in boxes]
    objects = sites.tile_objects(boxes, masks, 0, 0, 128)
    assert [o["box"] for o in objects] == [(120, 10, 128, 20), (124, 40, 128, 50), (5, 5, 15, 15)]
    assert [o["difficult"] for o in objects] == [False, True, False]  # 80 %, 40 %, whole
    assert [o["truncated"] for o in objects] == [True, True, False]
    below = sites.tile_objects(boxes, masks, 128, 0, 128)  # the tile under it: the other parts
    assert [o["box"] for o in below] == [(0, 10, 2, 20), (0, 40, 6, 50), (12, 60, 22, 70)]
    assert [o["difficult"] for o in below] == [True, False, False]


def test_photo_scores_from_a_predict_json(folder, tmp_path):
    """The runner's AP / recall of ``rfcn-tf predict`` output: the ground truth itself scores
    1 and 1; every other non-difficult object found, plus a false positive ranked first,
    gives recall ≈ 1/2."""
    import json

    from rfcn_tf.data.voc_folder import read_voc_folder

    root, _ = folder
    records, _ = read_voc_folder(root, "photos_B")
    perfect = [
        {"file": p, "detections": [{"box": b.tolist(), "score": 1.0, "label": 0} for b in boxes]}
        for p, boxes in zip(records.paths, records.boxes)
    ]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    assert sites.photo_scores(root, "photos_B", tmp_path / "perfect.json") == (1.0, 1.0)

    half = [
        {
            "file": p,
            "detections": [{"box": [0, 0, 3, 3], "score": 0.9, "label": 0}]
            + [{"box": b.tolist(), "score": 0.5, "label": 0} for b in boxes[::2]],
        }
        for p, boxes in zip(records.paths, records.boxes)
    ]
    (tmp_path / "half.json").write_text(json.dumps(half))
    ap, recall = sites.photo_scores(root, "photos_B", tmp_path / "half.json")
    positives = sum(len(b) for b in records.boxes)
    assert recall == sum(len(b[::2]) for b in records.boxes) / positives
    assert 0.0 < ap < recall


def test_make_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a folder this benchmark wrote"):
        sites.make_sites(str(tmp_path), photos={"A": 1}, tile=64, photo_size=(70, 70))
    assert (tmp_path / "mine.txt").read_text() == "keep"
