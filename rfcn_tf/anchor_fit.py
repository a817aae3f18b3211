"""Anchors that fit a dataset's boxes: their recall, and scales × ratios chosen from the boxes.

Everything works on box shapes ``[N, 2]`` (height, width) in the pixels the model sees:
each training image's boxes scaled by the model's resize rule (``rfcn_tf.image_scale``),
once per ``min_side`` for multi-scale training. A random crop applied before the resize
(augmentation) is not modelled: the shapes are those of the resized whole images.

**Recall** of a set of anchors: the fraction of boxes whose best anchor has IoU ≥ 0.5,
where a box and an anchor are compared *centred at the same point* (the IoU of their
shapes alone). On the real grid an anchor centre lies up to ``stride / 2`` from the box's
centre on each axis, so this is an upper bound; for objects a few strides across the
difference is small.

**Fit** (:func:`fit_anchors`): anchors in this codebase are every scale × every ratio
(``RFCNConfig.anchor_scales`` / ``anchor_ratios``, ``anchors.base_anchors``), so a k-means
over (w, h), which returns unrelated shapes, does not fit the structure. The fit starts
from a quantile rule (scales at the equal-mass quantiles of √(h·w), ratios at those of
h/w) and then improves one scale or ratio at a time, each over a log-spaced grid spanning
the boxes, keeping the value with the highest recall (ties: the highest mean best IoU, the
objective of k-means with the IoU distance), until a round changes nothing. The reported
recall is thus the quantity maximised; the tie-break keeps anchors centred in their
groups rather than at the edge of the 0.5 threshold. Deterministic; numpy only.
"""

import dataclasses

import numpy as np

ANCHOR_MODES = ("default", "auto")  # rfcn-tf train --anchors
RECALL_IOU = 0.5  # a box counts as covered when its best anchor reaches this IoU
LOW_RECALL = 0.9  # below this, training warns
MAX_IMAGES = 2000  # images read for the box statistics (a seeded sample of larger sets)
MAX_FIT_BOXES = 20000  # boxes the search evaluates (a seeded sample of more)
GRID_SIZE = 64  # candidate values per scale / ratio in one search step
MAX_ROUNDS = 10
_CHUNK = 65536  # boxes per block in anchor_iou (bounds the [N, A] temporaries)


def anchor_shapes(scales, ratios):
    """``[A, 2]`` (height, width) of the anchors ``anchors.base_anchors`` makes, same order:
    area ``scale²``, height / width = ``ratio``."""
    ratios = np.asarray(ratios, np.float64)[:, None]
    scales = np.asarray(scales, np.float64)[None, :]
    heights = (scales * np.sqrt(ratios)).reshape(-1)
    widths = (scales / np.sqrt(ratios)).reshape(-1)
    return np.stack([heights, widths], axis=-1)


def centred_iou(boxes_hw, anchors_hw):
    """IoU of boxes and anchors centred at the same point: ``[N, 2]``, ``[A, 2]`` → ``[N, A]``."""
    boxes_hw = np.asarray(boxes_hw, np.float64)
    anchors_hw = np.asarray(anchors_hw, np.float64)
    inter = np.minimum(boxes_hw[:, None, 0], anchors_hw[None, :, 0]) * np.minimum(
        boxes_hw[:, None, 1], anchors_hw[None, :, 1]
    )
    union = (boxes_hw[:, 0] * boxes_hw[:, 1])[:, None] + (anchors_hw[:, 0] * anchors_hw[:, 1])[None] - inter
    return inter / union


def best_anchor_iou(boxes_hw, scales, ratios):
    """``[N]``: each box's highest centred IoU over the anchors ``scales × ratios``."""
    boxes_hw = _check_boxes(boxes_hw)
    anchors = anchor_shapes(scales, ratios)
    return np.concatenate(
        [centred_iou(boxes_hw[i : i + _CHUNK], anchors).max(axis=1) for i in range(0, len(boxes_hw), _CHUNK)]
        or [np.zeros(0)]
    )


def anchor_recall(boxes_hw, scales, ratios, iou_threshold=RECALL_IOU):
    """Fraction of boxes ``[N, 2]`` (h, w) whose best anchor of ``scales × ratios`` has
    centred IoU ≥ ``iou_threshold`` (nan for no boxes)."""
    best = best_anchor_iou(boxes_hw, scales, ratios)
    return float(np.mean(best >= iou_threshold)) if len(best) else float("nan")


def fit_anchors(boxes_hw, num_scales=4, num_ratios=3, iou_threshold=RECALL_IOU, seed=0):
    """Anchor scales and ratios for boxes ``[N, 2]`` (h, w) → ``(scales, ratios)``, each a
    sorted tuple of floats (scales in pixels rounded to 0.1, ratios h/w to 0.01).

    The search (module docstring) maximises :func:`anchor_recall` at ``iou_threshold``;
    more than ``MAX_FIT_BOXES`` boxes are subsampled with ``seed``.
    """
    boxes_hw = _check_boxes(boxes_hw)
    if len(boxes_hw) == 0:
        raise ValueError("fit_anchors: no boxes to fit anchors to")
    if int(num_scales) < 1 or int(num_ratios) < 1:
        raise ValueError(
            f"fit_anchors: num_scales and num_ratios must be >= 1, got {num_scales}, {num_ratios}"
        )
    if len(boxes_hw) > MAX_FIT_BOXES:
        pick = np.random.default_rng(seed).choice(len(boxes_hw), MAX_FIT_BOXES, replace=False)
        boxes_hw = boxes_hw[np.sort(pick)]
    log_scale = 0.5 * np.log(boxes_hw[:, 0] * boxes_hw[:, 1])
    log_ratio = np.log(boxes_hw[:, 0] / boxes_hw[:, 1])
    mids = lambda n: (2 * np.arange(n) + 1) / (2 * n)  # noqa: E731  equal-mass bin centres
    params = [np.quantile(log_scale, mids(num_scales)), np.quantile(log_ratio, mids(num_ratios))]
    # Candidates span the boxes plus the reach of one anchor at IoU 0.5 (a factor √2 in
    # scale, 2.25 in ratio) beyond them.
    grids = [
        np.linspace(log_scale.min() - np.log(2) / 2, log_scale.max() + np.log(2) / 2, GRID_SIZE),
        np.linspace(log_ratio.min() - np.log(2.25), log_ratio.max() + np.log(2.25), GRID_SIZE),
    ]

    def best_iou(log_scales, log_ratios):  # → [N]
        iou = centred_iou(boxes_hw, anchor_shapes(np.exp(log_scales), np.exp(log_ratios)))
        return iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes_hw))

    best = best_iou(*params)
    current = (np.mean(best >= iou_threshold), np.mean(best))
    for _ in range(MAX_ROUNDS):
        changed = False
        for axis in (0, 1):
            for i in range(len(params[axis])):
                rest = best_iou(*[np.delete(p, i) if k == axis else p for k, p in enumerate(params)])
                # Every grid value in place of parameter i at once: [N, ratios, scales]
                # (base_anchors' ratio-major order), the grid on the varied axis.
                trial = [grids[0], params[1]] if axis == 0 else [params[0], grids[1]]
                iou = centred_iou(boxes_hw, anchor_shapes(np.exp(trial[0]), np.exp(trial[1])))
                iou = iou.reshape(len(boxes_hw), len(trial[1]), len(trial[0]))
                iou = iou.max(axis=1 + axis)  # over the other axis's values → [N, grid]
                best = np.maximum(rest[:, None], iou)
                recall, mean = np.mean(best >= iou_threshold, axis=0), np.mean(best, axis=0)
                top = np.flatnonzero(recall == recall.max())
                j = top[np.argmax(mean[top])]
                if (recall[j], mean[j]) > current:
                    current, changed = (recall[j], mean[j]), True
                    params[axis] = params[axis].copy()
                    params[axis][i] = grids[axis][j]
        if not changed:
            break
    scales = tuple(sorted(float(v) for v in np.round(np.exp(params[0]), 1)))
    ratios = tuple(sorted(float(v) for v in np.round(np.exp(params[1]), 2)))
    return scales, ratios


def training_box_shapes(examples, min_side, max_side, max_images=MAX_IMAGES, seed=0):
    """Boxes of common examples at the model's scale → float64 ``[N, 2]`` (h, w).

    examples: a ``tf.data.Dataset`` of common examples (``rfcn_tf.data.load_examples``;
    pass a shuffled one to sample a large set: its first ``max_images`` are read), or a
    sequence of numpy ones (``rfcn_tf.data.read_examples``: ``max_images`` of them, drawn by
    ``seed`` when there are more). Each image's boxes are scaled as
    ``image_scale.resized_size`` resizes the image, once per ``min_side`` value (multi-scale
    training). Only box shapes are kept; no model is built.
    """
    from rfcn_tf.image_scale import static_resized_size

    if hasattr(examples, "take"):
        import tensorflow as tf

        def size_and_boxes(example):
            return tf.shape(example["image"])[:2], example["boxes"]

        shapes = examples.take(max_images).map(size_and_boxes, num_parallel_calls=tf.data.AUTOTUNE)
        shapes = shapes.as_numpy_iterator()
    else:
        picked = np.arange(len(examples))
        if len(picked) > max_images:
            picked = np.sort(np.random.default_rng(seed).permutation(len(picked))[:max_images])
        shapes = (
            (np.shape(e["image"])[:2], np.asarray(e["boxes"])) for e in map(examples.__getitem__, picked)
        )
    sizes, counts, boxes = [], [], []
    for size, b in shapes:
        sizes.append(size)
        counts.append(len(b))
        boxes.append(b.reshape(-1, 4))
    if not sizes:
        return np.zeros((0, 2))
    sizes = np.asarray(sizes, np.float64)
    boxes = np.concatenate(boxes).astype(np.float64)
    hw = boxes[:, 2:] - boxes[:, :2]
    out = []
    for side in min_side if isinstance(min_side, (tuple, list)) else (min_side,):
        factor = static_resized_size(sizes, side, max_side) / sizes  # per axis, as rounded
        out.append(hw * np.repeat(factor, counts, axis=0))
    return np.concatenate(out)


@dataclasses.dataclass
class AnchorReport:
    """What ``rfcn-tf train`` prints about its anchors (recall as :func:`anchor_recall`)."""

    num_boxes: int
    median_side: float  # median √(h·w) of the boxes at the model's scale
    feature_stride: int
    given: tuple[tuple[float, ...], tuple[float, ...]]  # (scales, ratios) of the config
    given_recall: float
    fitted: tuple[tuple[float, ...], tuple[float, ...]] = None  # with --anchors auto
    fitted_recall: float = None

    @property
    def recall(self):
        """The recall of the anchors the model is built with."""
        return self.given_recall if self.fitted is None else self.fitted_recall

    def lines(self):
        """→ ``(info lines, warning lines)``."""

        def describe(name, anchors, recall):
            return (
                f"{name} anchors scales {list(anchors[0])} × ratios {list(anchors[1])}: recall {recall:.3f}"
            )

        head = (
            f"anchors: {self.num_boxes} training boxes at the model's scale, median side "
            f"{self.median_side:.1f} px; recall = fraction whose best anchor has IoU ≥ "
            f"{RECALL_IOU} (centred)"
        )
        info = [head, "  " + describe("default", self.given, self.given_recall)]
        if self.fitted is not None:
            info.append("  " + describe("auto", self.fitted, self.fitted_recall))
        warnings = []
        if self.recall < LOW_RECALL:
            hint = (
                " (try --anchors auto)"
                if self.fitted is None
                else " even with fitted anchors: the boxes' shapes vary more than "
                f"{len(self.fitted[0])} scales × {len(self.fitted[1])} ratios cover"
            )
            warnings.append(
                f"anchor recall {self.recall:.3f} is below {LOW_RECALL}: "
                f"{1 - self.recall:.0%} of the training boxes have no anchor with "
                f"IoU ≥ {RECALL_IOU}{hint}"
            )
        if self.median_side < self.feature_stride:
            warnings.append(
                f"the median box is {self.median_side:.1f} px at the model's scale, "
                f"less than one feature cell ({self.feature_stride} px): objects this "
                "small are hard to find; see a larger --min-side/--max-side, --crop "
                "or --feature-stride 8"
            )
        return info, warnings


def report_anchors(boxes_hw, config, fit=False, seed=0):
    """Box shapes ``[N, 2]`` at ``config``'s scale → :class:`AnchorReport` for the config's
    anchors and, with ``fit``, for anchors :func:`fit_anchors` chooses with the config's
    numbers of scales and ratios (so a model's weights keep their shapes)."""
    boxes_hw = _check_boxes(boxes_hw)
    if len(boxes_hw) == 0:
        raise ValueError("the training data has no boxes: anchors cannot be checked or fitted")
    given = (tuple(config.anchor_scales), tuple(config.anchor_ratios))
    report = AnchorReport(
        num_boxes=len(boxes_hw),
        median_side=float(np.median(np.sqrt(boxes_hw.prod(axis=1)))),
        feature_stride=int(config.feature_stride),
        given=given,
        given_recall=anchor_recall(boxes_hw, *given),
    )
    if fit:
        report.fitted = fit_anchors(boxes_hw, len(given[0]), len(given[1]), seed=seed)
        report.fitted_recall = anchor_recall(boxes_hw, *report.fitted)
    return report


def _check_boxes(boxes_hw):
    boxes_hw = np.asarray(boxes_hw, np.float64).reshape(-1, 2)
    if not np.all(boxes_hw > 0):
        raise ValueError("boxes_hw: every height and width must be > 0")
    return boxes_hw
