"""Tiled (sliced) inference: a large image detected tile by tile at its own resolution.

A detector resizes every image to its scale (``min_side`` / ``max_side``): a 2300×2500
photo seen by a model trained on 400 px tiles shrinks 36 px objects to 6 px, and at most
``max_detections`` objects come out. ``predict_tiled`` cuts the image into overlapping
windows of the detector's own input size (``tile_grid``), so each is seen at native
resolution, runs them through the detector in batches, maps the boxes back into the
image's pixels and merges the duplicates seen by two tiles (``merge_detections``).

Memory: the image is read window by window (numpy slices of it, never a float32 copy of
the whole), ``batch_size`` windows at a time; the detections are the only other thing kept.
"""

import argparse
import math
import numbers

import keras
import numpy as np

from rfcn_tf.decoding import count_capped, warn_capped
from rfcn_tf.export.files import default_input_size
from rfcn_tf.loading import Detector, keras_detector

MERGES = ("edges", "nms")
# A box within this many pixels of a tile side that lies inside the image is "cut" by it.
EDGE_MARGIN = 2.0
# A cut box is a duplicate of an uncut one that covers at least this fraction of it.
COVERED = 0.5


def tile_grid(height, width, tile, overlap=0.2):
    """The windows that cover a ``height × width`` image → int64 ``[T, 4]`` ``(y0, x0, y1,
    x1)``, row by row.

    tile: ``(tile_h, tile_w)`` or one int for both. Every window has that size (clamped to
    the image on an axis shorter than the tile: one window spans it), lies inside the image,
    and neighbours overlap by at least ``ceil(overlap × tile)`` pixels: the windows are
    spread evenly from the first to the last one, which ends on the image's edge (no
    padding). So an object of at most ``ceil(overlap × tile)`` pixels along an axis lies
    whole inside some window. overlap: in [0, 1).
    """
    tile_h, tile_w = tile_pair(tile)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1) (a fraction of the tile); got {overlap!r}")
    for name, value in (("height", height), ("width", width)):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"image {name} must be a positive int; got {value!r}")
    ys, h = _starts(int(height), tile_h, overlap)
    xs, w = _starts(int(width), tile_w, overlap)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y0.reshape(-1), x0.reshape(-1)
    return np.stack([y0, x0, y0 + h, x0 + w], axis=-1).astype(np.int64)


def _starts(length, size, overlap):
    """Window starts along one axis and the window length."""
    if length <= size:
        return np.zeros(1, np.int64), length
    step = max(size - math.ceil(overlap * size), 1)  # the largest spacing allowed
    count = math.ceil((length - size) / step) + 1
    return np.round(np.linspace(0, length - size, count)).astype(np.int64), size


def tile_pair(tile):
    """``tile`` (an int or ``(height, width)``) → ``(height, width)``; ValueError otherwise."""
    pair = (tile, tile) if isinstance(tile, numbers.Integral) else tuple(tile)
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f"tile must be a positive int or (height, width); got {tile!r}")
    return int(pair[0]), int(pair[1])


def default_tile(detector):
    """The tile a detector sees at its own scale: a TFLite/ONNX export's input size, else
    ``(min_side, max_side)`` (the model's resize is then the identity)."""
    return detector.input_size or default_input_size(detector.config)


def predict_tiled(
    model, image, tile=None, overlap=0.2, batch_size=4, merge="edges", iou_threshold=None, max_detections=None
):
    """Detect objects in one large image, tile by tile (module doc).

    model: an ``RFCN``, or a ``Detector`` (``rfcn_tf.load_detector(path)[0]``: a
    ``.keras`` file, SavedModel, TFLite or ONNX export).
    image: ``[H, W, 3]`` RGB, uint8 or float in 0..255 (numpy, a memory map, or a tensor).
    tile: ``(height, width)`` or one int; None or ``"auto"``: ``default_tile`` (the
    detector's scale).
    overlap: the minimum overlap of neighbouring tiles, a fraction of the tile (``tile_grid``).
    batch_size: tiles per detector call.
    merge: ``"edges"`` (default): a box cut by a tile side inside the image is dropped when
    another tile's uncut box of its class covers at least half of it, then class-wise NMS;
    ``"nms"``: class-wise NMS over all tiles' boxes. iou_threshold: the NMS's (default the
    model's ``nms_iou``).
    max_detections: keep at most this many (best first); default all. Each tile still holds
    at most the model's ``max_detections``: a warning says how many tiles reached it.

    Returns ``{"boxes": [1, N, 4] yxyx pixels of the image, "confidence": [1, N], "labels":
    [1, N] int32, "num_detections": [1]}``, best first: ``model.predict``'s dict for one
    image, N = the number found (boxes yxyx whatever the model's ``bounding_box_format``,
    as ``load_detector``'s detectors return them).
    """
    detector = _as_detector(model)
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}; got {merge!r}")
    if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if max_detections is not None and not (
        isinstance(max_detections, numbers.Integral) and max_detections >= 1
    ):
        raise ValueError(f"max_detections must be None or a positive int; got {max_detections!r}")
    image = _check_image(image)
    height, width = image.shape[:2]
    if tile is None or (isinstance(tile, str) and tile == "auto"):
        tile = default_tile(detector)
    windows = tile_grid(height, width, tile, overlap)
    cap = detector.config.max_detections
    boxes, scores, labels, owner, capped = [], [], [], [], 0
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        out = detector(np.stack([image[y0:y1, x0:x1] for y0, x0, y1, x1 in chunk]))
        counts = np.asarray(out["num_detections"]).astype(int)
        capped += count_capped(counts, cap)
        for b, n in enumerate(counts):
            boxes.append(out["boxes"][b, :n] + np.tile(chunk[b, :2], 2))
            scores.append(out["confidence"][b, :n])
            labels.append(out["labels"][b, :n])
            owner.append(np.full(n, start + b))
    if capped:
        warn_capped(f"{capped} of {len(windows)} tiles", cap)
    boxes, scores, labels = (np.concatenate(part) for part in (boxes, scores, labels))
    keep = merge_detections(
        boxes,
        scores,
        labels,
        windows,
        np.concatenate(owner),
        (height, width),
        merge,
        detector.config.nms_iou if iou_threshold is None else iou_threshold,
    )
    if max_detections is not None:
        if len(keep) >= max_detections:
            warn_capped("the tiled image (predict_tiled's max_detections)", max_detections)
        keep = keep[:max_detections]
    return {
        "boxes": boxes[keep].astype(np.float32)[None],
        "confidence": scores[keep].astype(np.float32)[None],
        "labels": labels[keep].astype(np.int32)[None],
        "num_detections": np.array([len(keep)], np.int32),
    }


def _as_detector(model):
    if isinstance(model, Detector):
        return model
    if isinstance(model, keras.Model) and hasattr(model, "config"):
        return keras_detector(model)[0]
    raise TypeError(
        "predict_tiled needs an RFCN model or a Detector (rfcn_tf.load_detector"
        f"(path)[0]); got {type(model).__name__}"
    )


def _check_image(image):
    """One ``[H, W, 3]`` image as a numpy array (no copy when it is one already)."""
    if hasattr(image, "numpy") and not isinstance(image, np.ndarray):
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"predict_tiled takes one [height, width, 3] RGB image; got shape {image.shape}")
    if image.dtype.kind not in "uif":
        raise ValueError(f"the image must be uint8 or float in 0..255; got dtype {image.dtype}")
    return image


def merge_detections(boxes, scores, labels, windows, owner, image_size, merge="edges", iou_threshold=0.3):
    """Tiles' detections in image pixels → the indices kept, best first.

    boxes ``[N, 4]`` yxyx, scores ``[N]``, labels ``[N]``; windows ``[T, 4]`` (``tile_grid``)
    and owner ``[N]``: the window each box came from; image_size ``(height, width)``.
    merge (``predict_tiled``): ``"nms"`` is greedy class-wise NMS (a box is dropped when a
    better one of its class overlaps it with IoU > ``iou_threshold``); ``"edges"`` first
    drops every box cut by an inner tile side (within ``EDGE_MARGIN`` px) that an uncut
    box of its class from another tile covers by ``COVERED`` of its area.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(boxes), bool)
    i, j, inter = overlapping_pairs(boxes, labels, image_size[1])
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
    if merge == "edges":
        cut = cut_by_tile(boxes, windows[owner], image_size)
        other = owner[i] != owner[j]
        for a, b in ((i, j), (j, i)):  # a cut box a covered by an uncut box b
            dropped = other & cut[a] & ~cut[b] & (inter >= COVERED * area[a])
            alive[a[dropped]] = False
        both = alive[i] & alive[j]
        i, j, inter = i[both], j[both], inter[both]
    iou = inter / np.maximum(area[i] + area[j] - inter, 1e-12)
    alive &= greedy_nms(order, i[iou > iou_threshold], j[iou > iou_threshold], len(boxes))
    return order[alive[order]]


def overlapping_pairs(boxes, labels, width, block=4096):
    """Each pair of boxes of one class that intersect, once → ``(i, j, intersection area)``.

    A sweep along x: boxes sorted by ``xmin``, each paired with those starting before its
    ``xmax`` (classes moved apart by ``width + 1`` so they never meet), ``block`` boxes at
    a time; the work and memory grow with the boxes sharing an x range, not with N².
    """
    shifted = boxes.copy()
    shifted[:, [1, 3]] += labels[:, None].astype(np.float64) * (width + 1.0)
    order = np.argsort(shifted[:, 1], kind="stable")
    x0 = shifted[order, 1]
    ends = np.searchsorted(x0, shifted[order, 3], side="left")
    found = [(np.zeros(0, np.int64),) * 2 + (np.zeros(0),)]
    for start in range(0, len(order), block):
        rows = np.arange(start, min(start + block, len(order)))
        counts = np.maximum(ends[rows] - rows - 1, 0)
        first = np.repeat(rows, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        i, j = order[first], order[first + 1 + offsets]
        lo = np.maximum(shifted[i, :2], shifted[j, :2])
        hi = np.minimum(shifted[i, 2:], shifted[j, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        meet = inter > 0
        found.append((i[meet], j[meet], inter[meet]))
    return tuple(np.concatenate(part) for part in zip(*found))


def cut_by_tile(boxes, windows, image_size):
    """``[N, 4]`` boxes and the ``[N, 4]`` window each came from → bool ``[N]``: the box
    reaches (within ``EDGE_MARGIN``) a window side that is not the image's edge."""
    height, width = image_size
    inner = np.stack(
        [windows[:, 0] > 0, windows[:, 1] > 0, windows[:, 2] < height, windows[:, 3] < width], axis=-1
    )
    near = np.concatenate(
        [boxes[:, :2] - windows[:, :2] <= EDGE_MARGIN, windows[:, 2:] - boxes[:, 2:] <= EDGE_MARGIN], axis=-1
    )
    return np.any(inner & near, axis=-1)


def greedy_nms(order, i, j, count):
    """Greedy NMS given the suppressing pairs ``(i, j)`` (unordered) → bool ``[count]``
    kept: in ``order`` (best first), a box is kept unless a kept better box pairs with it."""
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count)
    better = np.where(rank[i] < rank[j], i, j)
    worse = np.where(rank[i] < rank[j], j, i)
    keep = np.ones(count, bool)
    by_worse = np.argsort(rank[worse], kind="stable")
    better, worse = better[by_worse], worse[by_worse]
    starts = np.flatnonzero(np.r_[True, worse[1:] != worse[:-1]]) if len(worse) else []
    for s, e in zip(starts, list(starts[1:]) + [len(worse)]):
        keep[worse[s]] = not keep[better[s:e]].any()
    return keep


def add_tiling_arguments(parser):
    """``--tile`` and ``--overlap`` on ``parser`` (read back with ``tile_from_args``); returns
    the argument group."""
    group = parser.add_argument_group("tiled inference (large images)")
    group.add_argument(
        "--tile",
        type=_parse_tile,
        default=None,
        metavar="SIZE",
        help="detect each image tile by tile at its own resolution: tiles of "
        "SIZE×SIZE or HxW pixels, or 'auto' (the model's scale: MIN_SIDE x "
        "MAX_SIDE, a TFLite/ONNX export's input size); default: off, the "
        "whole image resized to the model's scale",
    )
    group.add_argument(
        "--overlap",
        type=float,
        default=None,
        metavar="F",
        help="with --tile: the minimum overlap of neighbouring tiles, a fraction "
        "of the tile (default 0.2); objects up to F × SIZE are seen whole",
    )
    return group


def tile_from_args(args):
    """``--tile`` / ``--overlap`` → ``{"tile": None (off), "auto", an int or (h, w), "overlap"}``."""
    if args.overlap is None:
        return {"tile": args.tile, "overlap": 0.2}
    if args.tile is None:
        raise ValueError("--overlap applies with --tile (tiled inference)")
    if not 0.0 <= args.overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1) (a fraction of the tile); got {args.overlap}")
    return {"tile": args.tile, "overlap": args.overlap}


def _parse_tile(text):
    """``"400"``, ``"400x600"`` or ``"auto"`` → 400, (400, 600) or "auto"."""
    if text == "auto":
        return text
    try:
        sides = [int(v) for v in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE, HxW (positive integers) or 'auto'; got {text!r}")
    return sides[0] if len(sides) == 1 else tuple(sides)
