"""Pictures: detections drawn on an image, and the R-FCN position-sensitive score-map figure.

numpy + Pillow only (no TensorFlow). Images are RGB ``uint8`` ``[H, W, 3]``; inputs may
also be ``[H, W]`` grayscale, ``[H, W, 1]`` or ``[H, W, 4]`` RGBA (alpha dropped), as
``uint8`` or any numeric type holding 0..255 (rounded and clipped). Boxes are absolute
pixel ``yxyx`` (``[ymin, xmin, ymax, xmax]``), as everywhere in the package.

Score maps use the package's **bin-major** channel layout: channel ``(i·k + j)·D + d`` holds
bin row ``i``, bin column ``j``, class ``d`` with ``D = C + 1``, ``d = 0`` the background
and ``d = c + 1`` the user class ``c``.
"""

import colorsys
import dataclasses
import os
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Outline of the RoI and of the highlighted bin in the score-map figure.
HIGHLIGHT_COLOR = (255, 40, 40)
BACKGROUND_COLOR = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)

# Viridis-like colormap: (position, RGB) anchors, interpolated linearly; luminance rises
# monotonically from 0 (dark purple) to 1 (yellow).
_COLORMAP_ANCHORS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)

# Score-map figure layout, in pixels.
_PANEL = 384  # long side of panel A's image and of panel B's tile grid
_MARGIN = 16
_GAP = 32  # between panels
_TILE_GAP = 4
_TITLE_H = 24
_MIN_COLUMN = 220  # a panel column is at least this wide, so its title fits
_VOTE_SIDE = 240  # panel C's grid side (rounded down to a multiple of k)
_CBAR_GAP, _CBAR_H, _CBAR_LABEL_H = 10, 12, 16
_CAPTION_H = 44
_MIN_TILE = 8


def class_color(class_id):
    """Deterministic RGB colour ``(r, g, b)`` for a user class id (golden-ratio hues)."""
    hue = (0.1 + int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


def colormap(values):
    """Values in ``[0, 1]`` (clipped), any shape ``[...]`` → ``uint8 [..., 3]`` viridis-like."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    pos = v * (len(_COLORMAP_ANCHORS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(_COLORMAP_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _COLORMAP_ANCHORS[lo] * (1.0 - frac) + _COLORMAP_ANCHORS[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


def _to_rgb_uint8(image, name="image"):
    """``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` 0..255 → new
    ``uint8 [H, W, 3]`` (alpha dropped)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    elif a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3]
    else:
        raise ValueError(f"{name} must have shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if a.dtype == np.uint8:
        return a.copy()
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric 0..255; got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _font(size):
    """Pillow's built-in font at ``size`` px (bitmap default where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right, bottom


def _fit_text(draw, text, font, max_width):
    """``text``, shortened with '...' until it fits ``max_width`` px."""
    if _text_size(draw, text, font)[0] <= max_width:
        return text
    while text and _text_size(draw, text + "...", font)[0] > max_width:
        text = text[:-1]
    return text + "..."


def _ink_for(rgb):
    """Black or white, whichever reads better on ``rgb``."""
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _as_int_labels(labels, n):
    a = np.asarray(labels)
    if a.shape != (n,):
        raise ValueError(f"labels must have shape [N] = [{n}]; got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
            raise ValueError(f"labels must be integer class ids; got {a.dtype} {a}")
    return a.astype(np.int64)


def _class_label(class_names, label):
    if class_names is None:
        return str(label)
    try:
        return str(class_names[label])
    except (IndexError, KeyError):
        size = len(class_names)
        kind = "keys" if isinstance(class_names, Mapping) else "entries"
        raise ValueError(f"label {label} has no name in class_names ({size} {kind})") from None


def draw_detections(
    image,
    boxes,
    scores,
    labels,
    class_names=None,
    score_threshold=0.0,
    line_width=None,
):
    """Detections drawn on a copy of ``image`` → ``uint8 [H, W, 3]``.

    image: ``[H, W, 3]`` (or ``[H, W]``, ``[H, W, 1]``, ``[H, W, 4]``) 0..255.
    boxes: ``[N, 4]`` absolute pixel yxyx; ``scores``: ``[N]`` or None (no score in the
    tag, no threshold); ``labels``: ``[N]`` int user classes ``0..C-1``, ``-1`` = padding.
    class_names: sequence or mapping id → name; None writes the id.
    Rows with label -1, score < ``score_threshold``, non-finite coordinates, or no area
    inside the image are skipped; the rest are clipped to the image. Each box is an
    outline (inside the box's pixels ``[ymin, ymax) × [xmin, xmax)``, rounded) in
    ``class_color(label)`` with a filled tag "name 0.87" above it (inside if no room).
    line_width: px; default ``max(2, round(max(H, W) / 300))``.
    """
    out = _to_rgb_uint8(image)
    height, width = out.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (one image's yxyx boxes); got {boxes.shape}")
    n = len(boxes)
    labels = _as_int_labels(labels, n)
    if np.any(labels < -1):
        raise ValueError(f"labels must be >= 0, or -1 for padding; got {labels.min()}")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape [N] = [{n}]; got {scores.shape}")
    if line_width is None:
        line_width = max(2, round(max(height, width) / 300))
    elif int(line_width) != line_width or line_width < 1:
        raise ValueError(f"line_width must be a positive integer; got {line_width}")
    line_width = int(line_width)

    keep = labels >= 0
    keep &= np.all(np.isfinite(boxes), axis=1)
    if scores is not None:
        keep &= scores >= score_threshold
    order = np.flatnonzero(keep)
    if scores is not None:  # highest score drawn last, on top
        order = order[np.argsort(scores[order], kind="stable")]

    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    font = _font(max(10, min(height, width) // 40))
    visible = []
    for idx in order:
        ymin, xmin, ymax, xmax = boxes[idx]
        top = int(round(max(ymin, 0.0)))
        left = int(round(max(xmin, 0.0)))
        bottom = int(round(min(ymax, float(height)))) - 1
        right = int(round(min(xmax, float(width)))) - 1
        if bottom < top or right < left:
            continue
        color = class_color(labels[idx])
        draw.rectangle((left, top, right, bottom), outline=color, width=line_width)
        visible.append((idx, top, left, color))
    for idx, top, left, color in visible:  # tags after all boxes, so none is hidden
        text = _class_label(class_names, int(labels[idx]))
        if scores is not None:
            text = f"{text} {scores[idx]:.2f}"
        text_w, text_h = _text_size(draw, text, font)
        tag_w, tag_h = text_w + 4, text_h + 3
        tag_left = max(0, min(left, width - tag_w))
        tag_top = top - tag_h if top - tag_h >= 0 else top
        draw.rectangle((tag_left, tag_top, tag_left + tag_w - 1, tag_top + tag_h - 1), fill=color)
        draw.text((tag_left + 2, tag_top + 1), text, fill=_ink_for(color), font=font)
    return np.asarray(pil, dtype=np.uint8).copy()


def save_png(image, path):
    """Write a ``uint8`` ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` array as PNG at ``path``
    (parent directories created). Returns ``path``."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"save_png needs a uint8 array; got {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(f"save_png needs [H, W], [H, W, 3] or [H, W, 4]; got {a.shape}")
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    Image.fromarray(a).save(path, format="PNG")
    return path


def _check_score_inputs(score_maps, roi, class_id, k, feature_stride):
    """Validated ``(maps [Hf, Wf, k, k] of class d = class_id + 1, roi [4] float)``."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k}")
    k = int(k)
    if not feature_stride > 0:
        raise ValueError(f"feature_stride must be positive; got {feature_stride}")
    maps = np.asarray(score_maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"score_maps must have shape [Hf, Wf, k*k*D]; got {maps.shape}")
    channels = maps.shape[-1]
    if channels % (k * k):
        raise ValueError(f"score_maps has {channels} channels, not divisible by k*k = {k * k}")
    depth = channels // (k * k)
    if depth < 2:
        raise ValueError(
            f"score_maps has D = {depth} classes per bin; need D = C + 1 >= 2 "
            "(background + at least one class)"
        )
    if maps.shape[0] == 0 or maps.shape[1] == 0:
        raise ValueError(f"score_maps is empty: shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("score_maps contains NaN or infinite values")
    if int(class_id) != class_id or not 0 <= class_id < depth - 1:
        raise ValueError(
            f"class_id {class_id} out of range: score_maps holds {depth - 1} user "
            f"classes (0..{depth - 2}) plus background"
        )
    roi = np.asarray(roi, dtype=np.float64)
    if roi.shape != (4,):
        raise ValueError(f"roi must have shape [4] (yxyx pixels); got {roi.shape}")
    if not np.all(np.isfinite(roi)) or roi[2] <= roi[0] or roi[3] <= roi[1]:
        raise ValueError(f"roi must be a finite yxyx box with ymax > ymin, xmax > xmin; got {roi}")
    hf, wf = maps.shape[:2]
    by_bin = maps.reshape(hf, wf, k, k, depth)[..., int(class_id) + 1]
    return by_bin, roi


def _bin_edges(roi, k):
    """RoI ``[4]`` → ``(ys [k+1], xs [k+1])`` bin boundaries in image pixels."""
    ymin, xmin, ymax, xmax = roi
    return np.linspace(ymin, ymax, k + 1), np.linspace(xmin, xmax, k + 1)


@dataclasses.dataclass(frozen=True)
class FigureLayout:
    """Pixel geometry of ``score_map_figure``; boxes are ``(top, left, height, width)``."""

    height: int
    width: int
    k: int
    image_box: tuple  # panel A: the resized input image
    image_scale: float  # panel A px per image px
    tile_scale: float  # panel B px per image px
    tile_size: tuple  # (height, width) of one tile
    tiles_origin: tuple  # (top, left) of tile (0, 0)
    colorbar_box: tuple
    cell_size: int  # panel C cell side
    votes_origin: tuple  # (top, left) of vote cell (0, 0)
    caption_top: int
    columns: tuple  # ((left, width) of panels A, B, C)

    def tile_box(self, i, j):
        """Box of score-map tile (bin row i, bin column j)."""
        th, tw = self.tile_size
        return (
            self.tiles_origin[0] + i * (th + _TILE_GAP),
            self.tiles_origin[1] + j * (tw + _TILE_GAP),
            th,
            tw,
        )

    def vote_cell_box(self, i, j):
        """Box of vote cell (i, j)."""
        s = self.cell_size
        return (self.votes_origin[0] + i * s, self.votes_origin[1] + j * s, s, s)


def score_map_figure_layout(image_height, image_width, k):
    """Layout of the figure for an ``image_height × image_width`` image and ``k×k`` bins."""
    h, w, k = int(image_height), int(image_width), int(k)
    if h < 1 or w < 1 or k < 1:
        raise ValueError(f"image size and k must be positive; got {h}x{w}, k={k}")
    longest = max(h, w)
    image_scale = _PANEL / longest
    ha, wa = max(1, round(h * image_scale)), max(1, round(w * image_scale))
    tile_long = (_PANEL - (k - 1) * _TILE_GAP) // k
    if tile_long < _MIN_TILE:
        raise ValueError(f"k = {k} is too large for the figure (tiles under {_MIN_TILE} px)")
    tile_scale = tile_long / longest
    th, tw = max(1, round(h * tile_scale)), max(1, round(w * tile_scale))
    hb, wb = k * th + (k - 1) * _TILE_GAP, k * tw + (k - 1) * _TILE_GAP
    cell = _VOTE_SIDE // k
    side = cell * k
    col_a, col_b, col_c = max(wa, _MIN_COLUMN), max(wb, _MIN_COLUMN), max(side, _MIN_COLUMN)
    left_a = _MARGIN
    left_b = left_a + col_a + _GAP
    left_c = left_b + col_b + _GAP
    top = _MARGIN + _TITLE_H
    content = max(ha, hb + _CBAR_GAP + _CBAR_H + _CBAR_LABEL_H, side + _CAPTION_H)
    tiles_left = left_b + (col_b - wb) // 2
    return FigureLayout(
        height=top + content + _MARGIN,
        width=left_c + col_c + _MARGIN,
        k=k,
        image_box=(top, left_a + (col_a - wa) // 2, ha, wa),
        image_scale=image_scale,
        tile_scale=tile_scale,
        tile_size=(th, tw),
        tiles_origin=(top, tiles_left),
        colorbar_box=(top + hb + _CBAR_GAP, left_b, _CBAR_H, col_b),
        cell_size=cell,
        votes_origin=(top, left_c + (col_c - side) // 2),
        caption_top=top + side + 8,
        columns=((left_a, col_a), (left_b, col_b), (left_c, col_c)),
    )


def _scaled_rect(y0, x0, y1, x1, scale):
    """Image-pixel box → inclusive PIL rectangle ``(left, top, right, bottom)`` at ``scale``."""
    return (
        round(x0 * scale),
        round(y0 * scale),
        round(x1 * scale) - 1,
        round(y1 * scale) - 1,
    )


def _panel_a(rgb, roi, k, layout):
    """Resized image, dimmed outside the RoI, with the RoI and its k×k bin grid."""
    _, _, ha, wa = layout.image_box
    s = layout.image_scale
    panel = Image.fromarray(rgb).resize((wa, ha), Image.BILINEAR)
    ys, xs = _bin_edges(roi, k)
    left, top, right, bottom = _scaled_rect(ys[0], xs[0], ys[-1], xs[-1], s)
    mask = Image.new("L", (wa, ha), 150)
    ImageDraw.Draw(mask).rectangle((left, top, right, bottom), fill=255)
    panel = Image.composite(panel, Image.new("RGB", (wa, ha), 0), mask)
    draw = ImageDraw.Draw(panel)
    for y in ys[1:-1]:
        yy = round(y * s)
        draw.line((left, yy, right, yy), fill=HIGHLIGHT_COLOR, width=1)
    for x in xs[1:-1]:
        xx = round(x * s)
        draw.line((xx, top, xx, bottom), fill=HIGHLIGHT_COLOR, width=1)
    draw.rectangle((left, top, right, bottom), outline=HIGHLIGHT_COLOR, width=3)
    return panel


def _tile(cells, gray, roi, i, j, k, stride, layout):
    """One tile: map ``cells [Hf, Wf]`` (0..1) over the image extent, bin (i, j) outlined."""
    th, tw = layout.tile_size
    s = layout.tile_scale
    hf, wf = cells.shape
    rows = np.clip(((np.arange(th) + 0.5) / s // stride).astype(np.int64), 0, hf - 1)
    cols = np.clip(((np.arange(tw) + 0.5) / s // stride).astype(np.int64), 0, wf - 1)
    heat = colormap(cells[rows][:, cols]).astype(np.float64)
    blend = 0.82 * heat + 0.18 * gray[..., None]  # a hint of the image for context
    tile = Image.fromarray(np.rint(blend).astype(np.uint8))
    draw = ImageDraw.Draw(tile)
    ys, xs = _bin_edges(roi, k)
    draw.rectangle(_scaled_rect(ys[0], xs[0], ys[-1], xs[-1], s), outline=(255, 255, 255))
    draw.rectangle(_scaled_rect(ys[i], xs[j], ys[i + 1], xs[j + 1], s), outline=HIGHLIGHT_COLOR, width=2)
    return tile


def score_map_figure(
    image,
    score_maps,
    roi,
    class_id,
    k,
    feature_stride=16,
    *,
    votes,
    class_name=None,
):
    """The R-FCN explanation picture for one RoI and class → ``uint8 [Hfig, Wfig, 3]``.

    image: ``[H, W, 3]`` (or gray / RGBA) 0..255. score_maps: float ``[Hf, Wf, k*k*D]``
    bin-major (channel ``(i·k + j)·D + d``), at ``feature_stride`` px per cell, aligned
    to the image's top-left. roi: ``[4]`` yxyx image pixels. class_id: user class c
    (maps d = c + 1). votes: ``[k, k]`` the model's pooled bin values for the class
    (``RFCN.explain(...)["class_bins"][b, r, :, :, class_id + 1]``). class_name: caption text
    (default the id).

    Panels, left to right (geometry: ``score_map_figure_layout``):
    A, the image with the RoI and its k×k bins; B, k×k tiles, tile (i, j) = map
    (i, j, d) over the whole image (nearest upsampling) with bin (i, j) outlined in
    ``HIGHLIGHT_COLOR`` and the RoI in white; C, the vote array, its values and their
    mean. B, C and the colour bar share one scale: the min..max of the k² maps of d.
    """
    rgb = _to_rgb_uint8(image)
    maps, roi = _check_score_inputs(score_maps, roi, class_id, k, feature_stride)
    k = int(k)
    votes = np.asarray(votes, dtype=np.float64)
    if votes.shape != (k, k):
        raise ValueError(f"votes must have shape [k, k] = [{k}, {k}]; got {votes.shape}")
    if not np.all(np.isfinite(votes)):
        raise ValueError("votes contains NaN or infinite values")
    height, width = rgb.shape[:2]
    layout = score_map_figure_layout(height, width, k)
    name = str(class_id) if class_name is None else str(class_name)

    vmin, vmax = float(maps.min()), float(maps.max())
    span = vmax - vmin

    def normalise(x):
        return (x - vmin) / span if span > 0 else np.full(np.shape(x), 0.5)

    fig = Image.new("RGB", (layout.width, layout.height), BACKGROUND_COLOR)
    draw = ImageDraw.Draw(fig)
    title_font, small_font = _font(14), _font(12)
    titles = (
        f"Input, RoI and its {k}x{k} bins",
        f"Score maps of '{name}': tile (i, j) = bin (i, j)",
        "Vote array (pooled bins)",
    )
    for (left, col_w), title in zip(layout.columns, titles):
        draw.text(
            (left, _MARGIN),
            _fit_text(draw, title, title_font, col_w),
            fill=TEXT_COLOR,
            font=title_font,
        )

    top, left = layout.image_box[:2]
    fig.paste(_panel_a(rgb, roi, k, layout), (left, top))

    th, tw = layout.tile_size
    gray = np.asarray(Image.fromarray(rgb).convert("L").resize((tw, th), Image.BILINEAR))
    for i in range(k):
        for j in range(k):
            tile = _tile(normalise(maps[..., i, j]), gray, roi, i, j, k, feature_stride, layout)
            top, left = layout.tile_box(i, j)[:2]
            fig.paste(tile, (left, top))

    top, left, bar_h, bar_w = layout.colorbar_box
    bar = colormap(np.linspace(0.0, 1.0, bar_w))[None].repeat(bar_h, axis=0)
    fig.paste(Image.fromarray(bar), (left, top))
    label_top = top + bar_h + 2
    draw.text((left, label_top), f"{vmin:.2f}", fill=TEXT_COLOR, font=small_font)
    high = f"{vmax:.2f}"
    draw.text(
        (left + bar_w - _text_size(draw, high, small_font)[0], label_top),
        high,
        fill=TEXT_COLOR,
        font=small_font,
    )
    middle = "shared scale"
    draw.text(
        (left + (bar_w - _text_size(draw, middle, small_font)[0]) // 2, label_top),
        middle,
        fill=TEXT_COLOR,
        font=small_font,
    )

    cell = layout.cell_size
    number_font = _font(int(np.clip(cell // 3, 10, 18)))
    colors = colormap(normalise(votes))
    for i in range(k):
        for j in range(k):
            top, left = layout.vote_cell_box(i, j)[:2]
            color = tuple(int(c) for c in colors[i, j])
            draw.rectangle((left, top, left + cell - 1, top + cell - 1), fill=color, outline=(255, 255, 255))
            text = f"{votes[i, j]:.2f}"
            text_w, text_h = _text_size(draw, text, number_font)
            draw.text(
                (left + (cell - text_w) // 2, top + (cell - text_h) // 2),
                text,
                fill=_ink_for(color),
                font=number_font,
            )
    col_left, col_w = layout.columns[2]
    captions = (
        (f"vote = mean = {votes.mean():.3f}", title_font),
        (f"class {name} (id {int(class_id)}, map d = {int(class_id) + 1})", small_font),
    )
    caption_top = layout.caption_top
    for text, font in captions:
        draw.text(
            (col_left, caption_top),
            _fit_text(draw, text, font, col_w),
            fill=TEXT_COLOR,
            font=font,
        )
        caption_top += _text_size(draw, text, font)[1] + 4
    return np.asarray(fig, dtype=np.uint8).copy()


def save_score_map_figure(path, image, score_maps, roi, class_id, k, **kwargs):
    """``score_map_figure(image, score_maps, roi, class_id, k, **kwargs)`` saved as PNG at
    ``path``; returns the figure ``uint8 [Hfig, Wfig, 3]``."""
    figure = score_map_figure(image, score_maps, roi, class_id, k, **kwargs)
    save_png(figure, path)
    return figure


# Precision–recall figure layout, in pixels.
_PR_SIZE = (280, 360)  # height, width
_PR_LEFT, _PR_RIGHT, _PR_TOP, _PR_BOTTOM = 48, 14, 30, 34
_PR_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_GRID_COLOR, _AXIS_COLOR = (225, 225, 225), (90, 90, 90)


def precision_recall_figure(precision, recall, title="", color=(31, 119, 180)):
    """A precision–recall curve → ``uint8 [280, 360, 3]``: the points ``(recall[i],
    precision[i])`` joined in order (both ``[D]`` in 0..1, e.g. one class's detections in
    descending score), on axes 0..1 with a grid at every 0.2; ``title`` above, "no
    detections" when D = 0."""
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    if precision.shape != recall.shape:
        raise ValueError(
            f"precision and recall must have the same length; got {precision.shape[0]} and {recall.shape[0]}"
        )
    if not (np.all(np.isfinite(precision)) and np.all(np.isfinite(recall))):
        raise ValueError("precision and recall must be finite")
    height, width = _PR_SIZE
    left, top = _PR_LEFT, _PR_TOP
    plot_w, plot_h = width - _PR_LEFT - _PR_RIGHT, height - _PR_TOP - _PR_BOTTOM
    fig = Image.new("RGB", (width, height), BACKGROUND_COLOR)
    draw = ImageDraw.Draw(fig)
    font, title_font = _font(11), _font(13)

    def point(r, p):
        return (left + float(np.clip(r, 0, 1)) * plot_w, top + (1 - float(np.clip(p, 0, 1))) * plot_h)

    for tick in _PR_TICKS:
        x, y = point(tick, tick)
        draw.line((x, top, x, top + plot_h), fill=_GRID_COLOR)
        draw.line((left, y, left + plot_w, y), fill=_GRID_COLOR)
        label = f"{tick:g}"
        text_w, text_h = _text_size(draw, label, font)
        draw.text((x - text_w / 2, top + plot_h + 4), label, fill=TEXT_COLOR, font=font)
        draw.text((left - text_w - 5, y - text_h / 2), label, fill=TEXT_COLOR, font=font)
    draw.rectangle((left, top, left + plot_w, top + plot_h), outline=_AXIS_COLOR)
    axis = "recall"
    draw.text(
        (left + (plot_w - _text_size(draw, axis, font)[0]) / 2, height - 15), axis, fill=TEXT_COLOR, font=font
    )
    draw.text((4, 4), _fit_text(draw, str(title), title_font, width - 8), fill=TEXT_COLOR, font=title_font)
    axis = "precision"  # written sideways, left of the tick labels
    text_w, text_h = _text_size(draw, axis, font)
    label = Image.new("RGB", (text_w, text_h + 2), BACKGROUND_COLOR)
    ImageDraw.Draw(label).text((0, 0), axis, fill=TEXT_COLOR, font=font)
    fig.paste(label.rotate(90, expand=True), (2, top + (plot_h - text_w) // 2))
    if len(recall) == 0:
        text = "no detections"
        text_w, text_h = _text_size(draw, text, title_font)
        draw.text(
            (left + (plot_w - text_w) / 2, top + (plot_h - text_h) / 2),
            text,
            fill=TEXT_COLOR,
            font=title_font,
        )
    else:
        points = [point(r, p) for r, p in zip(recall, precision)]
        if len(points) > 1:
            draw.line(points, fill=tuple(color), width=2, joint="curve")
        for x, y in points[:1] + points[-1:]:  # the first and last detection
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=tuple(color))
    return np.asarray(fig, dtype=np.uint8).copy()
