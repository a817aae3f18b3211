"""Tests for rfcn_tf.visualize: detection drawing, the score-map figure, PNG output."""

import numpy as np
import pytest
from PIL import Image

from rfcn_tf import RFCN, PSRoIPool, RFCNConfig
from rfcn_tf import visualize as vis


def _luma(pixels):
    pixels = np.asarray(pixels, dtype=np.float64)
    return float((pixels[..., :3] @ np.array([0.299, 0.587, 0.114])).mean())


def _crop(figure, box):
    top, left, height, width = box
    return figure[top : top + height, left : left + width]


# ---------------------------------------------------------------- draw_detections


def test_draw_detections_returns_new_uint8_and_keeps_input():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (50, 70, 3))  # float input
    before = image.copy()
    out = vis.draw_detections(image, [[5, 5, 40, 60]], [0.9], [2])
    assert out.shape == (50, 70, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    # uint8 input: the result is a separate array
    image8 = np.zeros((50, 70, 3), np.uint8)
    out8 = vis.draw_detections(image8, [[5, 5, 40, 60]], [0.9], [2])
    assert not np.shares_memory(out8, image8)
    assert image8.max() == 0 and out8.max() > 0


def test_box_outline_pixels_on_black_image():
    image = np.zeros((100, 120, 3), np.uint8)
    # yxyx box covering pixels rows 30..69, columns 20..89; the tag goes above row 30
    out = vis.draw_detections(image, [[30, 20, 70, 90]], [0.87], [0], line_width=2)
    color = vis.class_color(0)
    for y, x in [
        (30, 20),  # top-left corner
        (30, 55),  # middle of the top edge
        (69, 55),  # middle of the bottom edge
        (50, 20),  # middle of the left edge
        (50, 89),  # middle of the right edge
        (69, 89),  # bottom-right corner
        (31, 21),  # second pixel of the 2-px line
    ]:
        assert tuple(out[y, x]) == color, (y, x)
    for y, x in [
        (50, 55),  # centre of the box
        (32, 22),  # just inside the 2-px outline
        (67, 87),
        (85, 100),  # outside, below right
        (50, 5),  # outside, left
        (50, 110),  # outside, right
        (75, 55),  # just below the box
    ]:
        assert tuple(out[y, x]) == (0, 0, 0), (y, x)
    # the filled tag sits directly above the box's top-left corner
    assert tuple(out[29, 20]) == color
    assert not out[:12].any()  # nothing far above the box
    assert not out[:30, 65:].any()  # the tag stays short: nothing above the box's right


def test_two_classes_get_different_fixed_colours():
    assert vis.class_color(0) != vis.class_color(1)
    assert vis.class_color(3) == vis.class_color(3)
    palette = {vis.class_color(c) for c in range(20)}
    assert len(palette) == 20
    image = np.zeros((100, 200, 3), np.uint8)
    out = vis.draw_detections(image, [[30, 10, 90, 80], [30, 110, 90, 190]], [0.9, 0.8], [0, 1], line_width=2)
    assert tuple(out[60, 10]) == vis.class_color(0)
    assert tuple(out[60, 110]) == vis.class_color(1)
    assert tuple(out[60, 10]) != tuple(out[60, 110])


def test_padding_and_low_scores_are_not_drawn():
    image = np.zeros((80, 80, 3), np.uint8)
    boxes = [[10, 10, 60, 60], [20, 20, 70, 70], [5, 5, 30, 30]]
    out = vis.draw_detections(image, boxes, [0.9, 0.2, 0.95], [-1, 1, -1], score_threshold=0.5)
    assert not out.any()
    # the same box above the threshold is drawn
    out = vis.draw_detections(image, boxes, [0.9, 0.6, 0.95], [-1, 1, -1], score_threshold=0.5)
    assert tuple(out[45, 20]) == vis.class_color(1)


def test_partly_outside_box_is_clipped_and_outside_or_empty_skipped():
    image = np.zeros((100, 120, 3), np.uint8)
    out = vis.draw_detections(image, [[-10, 30, 150, 200]], [0.9], [2], line_width=2)
    color = vis.class_color(2)
    assert tuple(out[0, 60]) == color  # top edge clipped to row 0
    assert tuple(out[99, 60]) == color  # bottom edge clipped to the last row
    assert tuple(out[50, 119]) == color  # right edge clipped to the last column
    assert tuple(out[50, 30]) == color  # left edge where it is
    assert tuple(out[50, 70]) == (0, 0, 0)
    skipped = vis.draw_detections(
        image,
        [[200, 200, 300, 300], [10, 10, 10, 50], [40, 60, 20, 90], [np.nan, 0, 5, 5]],
        [0.9, 0.9, 0.9, 0.9],
        [0, 1, 2, 3],
    )
    assert not skipped.any()


def test_grayscale_and_rgba_inputs():
    gray = np.full((40, 50), 77, np.uint8)
    out = vis.draw_detections(gray, [[5, 5, 30, 40]], [0.5], [0], line_width=1)
    assert out.shape == (40, 50, 3)
    assert tuple(out[20, 20]) == (77, 77, 77)
    assert tuple(out[20, 5]) == vis.class_color(0)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    out = vis.draw_detections(rgba, [[5, 5, 30, 40]], [0.5], [1], line_width=1)
    assert out.shape == (40, 50, 3)
    assert tuple(out[20, 20]) == (200, 0, 0)
    assert tuple(out[20, 5]) == vis.class_color(1)


def test_class_names_appear_in_the_tag():
    image = np.zeros((120, 300, 3), np.uint8)
    color = vis.class_color(0)

    def tag_pixels(names):
        out = vis.draw_detections(image, [[60, 10, 110, 290]], [0.9], [0], names, line_width=1)
        return int(np.all(out[:60] == color, axis=-1).sum())

    short = tag_pixels(["a"])
    long = tag_pixels(["a much longer class name"])
    assert short > 0
    assert long > 2 * short
    with pytest.raises(ValueError, match="label 0 has no name"):
        vis.draw_detections(image, [[60, 10, 110, 290]], [0.9], [0], [])


def test_draw_detections_bad_input():
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        vis.draw_detections(image, [[1, 2, 3]], [0.5], [0])
    with pytest.raises(ValueError, match="scores must have shape"):
        vis.draw_detections(image, [[1, 2, 30, 30]], [0.5, 0.4], [0])
    with pytest.raises(ValueError, match="labels must be integer"):
        vis.draw_detections(image, [[1, 2, 30, 30]], [0.5], [0.5])
    with pytest.raises(ValueError, match="image must have shape"):
        vis.draw_detections(np.zeros((4, 40, 40, 3)), [[1, 2, 30, 30]], [0.5], [0])


# ---------------------------------------------------------------- score-map figure

K, STRIDE, D = 3, 16, 3  # 2 user classes + background
H, W = 96, 128
HF, WF = H // STRIDE, W // STRIDE
ROI = np.array([16.0, 32.0, 80.0, 112.0])  # yxyx, inside the image


VOTES = np.zeros((K, K))


def _channel(i, j, d, k=K, depth=D):
    return (i * k + j) * depth + d


def _hand_built_maps():
    """Only map (0, 0) of user class 1 (d = 2) is high; other classes have decoys."""
    maps = np.zeros((HF, WF, K * K * D), np.float32)
    maps[..., _channel(0, 0, 2)] = 1.0
    maps[..., _channel(1, 1, 1)] = 5.0  # class 0 (d = 1): must not be shown
    maps[..., _channel(2, 2, 0)] = 5.0  # background: must not be shown
    return maps


def _model_votes(maps, roi, class_id, k=K, stride=STRIDE):
    """The votes the model computes: PSRoIPool (align) of the maps, class d = class_id + 1."""
    pool = PSRoIPool(k=k, spatial_scale=1.0 / stride)
    bins = pool(np.asarray(maps, np.float32)[None], np.asarray(roi, np.float32)[None, None])
    return bins[0, 0, :, :, class_id + 1].numpy()


def test_figure_size_follows_layout():
    image = np.zeros((H, W, 3), np.uint8)
    maps = _hand_built_maps()
    figure = vis.score_map_figure(image, maps, ROI, 1, K, votes=_model_votes(maps, ROI, 1))
    assert figure.dtype == np.uint8
    # 16 margin + 24 title + max(A 288, B 3*94+2*4 + colour bar 38, C 240+44) + 16;
    # 16 + A 384 + 32 + B 3*125+2*4 + 32 + C 240 + 16
    assert figure.shape == (384, 1103, 3)
    layout = vis.score_map_figure_layout(H, W, K)
    assert (layout.height, layout.width) == figure.shape[:2]
    assert layout.tile_size == (94, 125)
    assert layout.image_box[2:] == (288, 384)
    seven = vis.score_map_figure(
        np.zeros((60, 100, 3), np.uint8),
        np.zeros((4, 7, 49 * 21)),
        [10, 10, 50, 90],
        19,
        7,
        votes=np.zeros((7, 7)),
    )
    assert seven.shape[:2] == (
        vis.score_map_figure_layout(60, 100, 7).height,
        vis.score_map_figure_layout(60, 100, 7).width,
    )


def test_hottest_tile_and_vote_follow_the_bin_major_layout():
    image = np.zeros((H, W, 3), np.uint8)
    maps = _hand_built_maps()
    figure = vis.score_map_figure(image, maps, ROI, 1, K, votes=_model_votes(maps, ROI, 1), class_name="cat")
    layout = vis.score_map_figure_layout(H, W, K)
    tile_luma = np.array([[_luma(_crop(figure, layout.tile_box(i, j))) for j in range(K)] for i in range(K)])
    assert np.unravel_index(tile_luma.argmax(), tile_luma.shape) == (0, 0)
    assert tile_luma[0, 0] > tile_luma.flatten()[1:].max() + 50
    # the other tiles all show the cold end of the colour map
    assert np.ptp(tile_luma.flatten()[1:]) < 5

    def cell_corner(i, j):
        top, left = layout.vote_cell_box(i, j)[:2]
        return figure[top + 3, left + 3]

    assert tuple(cell_corner(0, 0)) == tuple(vis.colormap(1.0))
    for i in range(K):
        for j in range(K):
            if (i, j) != (0, 0):
                assert tuple(cell_corner(i, j)) == tuple(vis.colormap(0.0))


def test_explicit_votes_are_drawn():
    image = np.zeros((H, W, 3), np.uint8)
    maps = np.random.default_rng(1).uniform(0, 1, (HF, WF, K * K * D))
    votes = np.full((K, K), 0.5)
    votes[2, 1] = 0.99
    figure = vis.score_map_figure(image, maps, ROI, 0, K, votes=votes)
    layout = vis.score_map_figure_layout(H, W, K)
    lumas = {
        (i, j): _luma(figure[layout.vote_cell_box(i, j)[0] + 3, layout.vote_cell_box(i, j)[1] + 3])
        for i in range(K)
        for j in range(K)
    }
    assert max(lumas, key=lumas.get) == (2, 1)


def test_bin_outline_in_the_expected_tile():
    image = np.zeros((H, W, 3), np.uint8)
    figure = vis.score_map_figure(image, _hand_built_maps(), ROI, 1, K, votes=np.zeros((K, K)))
    layout = vis.score_map_figure_layout(H, W, K)
    s = layout.tile_scale
    bin_h, bin_w = (ROI[2] - ROI[0]) / K, (ROI[3] - ROI[1]) / K
    i, j = 1, 2
    y0, x0 = ROI[0] + i * bin_h, ROI[1] + j * bin_w
    y1, x1 = y0 + bin_h, x0 + bin_w
    corner = (round(y0 * s), round(x0 * s))
    bottom_mid = (round(y1 * s) - 1, round((x0 + x1) / 2 * s))
    highlight = vis.HIGHLIGHT_COLOR
    for (ti, tj), expected in [((1, 2), True), ((0, 0), False), ((2, 2), False)]:
        top, left = layout.tile_box(ti, tj)[:2]
        for dy, dx in (corner, bottom_mid):
            is_highlight = tuple(figure[top + dy, left + dx]) == highlight
            assert is_highlight == expected, (ti, tj, dy, dx)
    # the tile's own bin (0, 0) is outlined in tile (0, 0)
    top, left = layout.tile_box(0, 0)[:2]
    assert tuple(figure[top + round(ROI[0] * s), left + round(ROI[1] * s)]) == highlight


def test_explained_votes_are_the_models_own():
    """RFCN.explain pools the boxes it is given with the graph's PSRoIPool: on the model's
    proposals (given in the input's pixels) the mean of its bins is the graph's class vote."""
    model = RFCN(config=RFCNConfig.small(num_classes=2, min_side=96, max_side=160))
    image = np.random.default_rng(3).uniform(0, 255, (1, 48, 80, 3)).astype(np.float32)
    raw = model.features_model({"images": image, "image_sizes": None})
    proposals = raw["proposals"]
    logits, _ = model.roi_head(
        {"class_maps": raw["class_maps"], "box_maps": raw["box_maps"], "rois": proposals}
    )
    explained = model.explain(image, proposals / 2.0)  # the model works at 2× this image
    np.testing.assert_allclose(explained["rois"], proposals, atol=1e-4)
    np.testing.assert_allclose(np.mean(explained["class_bins"], axis=(2, 3)), logits, atol=1e-5)
    assert explained["class_maps"].shape == (1, 6, 10, 3 * 3 * 3)


def test_score_map_figure_bad_input():
    image = np.zeros((H, W, 3), np.uint8)
    maps = _hand_built_maps()
    with pytest.raises(ValueError, match=r"10 channels, not divisible by k\*k = 9"):
        vis.score_map_figure(image, np.zeros((HF, WF, 10)), ROI, 0, K, votes=VOTES)
    with pytest.raises(ValueError, match="class_id 2 out of range"):
        vis.score_map_figure(image, maps, ROI, 2, K, votes=VOTES)
    with pytest.raises(ValueError, match="class_id -1 out of range"):
        vis.score_map_figure(image, maps, ROI, -1, K, votes=VOTES)
    with pytest.raises(ValueError, match=r"roi must have shape \[4\]"):
        vis.score_map_figure(image, maps, ROI[:3], 0, K, votes=VOTES)
    with pytest.raises(ValueError, match="ymax > ymin"):
        vis.score_map_figure(image, maps, [50, 10, 20, 60], 0, K, votes=VOTES)
    with pytest.raises(ValueError, match=r"votes must have shape \[k, k\]"):
        vis.score_map_figure(image, maps, ROI, 0, K, votes=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"score_maps must have shape \[Hf, Wf"):
        vis.score_map_figure(image, maps[0], ROI, 0, K, votes=VOTES)
    with pytest.raises(TypeError, match="votes"):
        vis.score_map_figure(image, maps, ROI, 0, K)


# ---------------------------------------------------------------- saving


def test_save_png_and_figure_write_readable_pngs(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    image[5:10, 5:20] = (10, 200, 30)
    path = vis.save_png(image, tmp_path / "nested" / "dir" / "a.png")
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (40, 30)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), image)
    figure_path = tmp_path / "figs" / "score.png"
    figure = vis.save_score_map_figure(
        figure_path,
        np.zeros((H, W, 3), np.uint8),
        _hand_built_maps(),
        ROI,
        1,
        K,
        votes=VOTES,
        class_name="cat",
    )
    with Image.open(figure_path) as png:
        assert png.size == (figure.shape[1], figure.shape[0])
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), figure)
    with pytest.raises(ValueError, match="uint8"):
        vis.save_png(image.astype(np.float32), tmp_path / "b.png")
