"""The targets, samplers, losses, boxes and anchors on numpy inputs, under whatever Keras
backend this process runs (called in process under TensorFlow, through
``tests.backend_helpers.on_backend`` under JAX and PyTorch). Under JAX the whole
computation is one ``jax.jit``: static shapes, no data-dependent control flow."""

import keras
import numpy as np
from keras import ops

from rfcn_tf import anchors, boxes, losses, targets
from rfcn_tf.config import RFCNConfig
from rfcn_tf.layers.rpn import AnchorGrid, flatten_rpn
from rfcn_tf.ops import random

SCALES, RATIOS = (16.0, 32.0), (0.5, 1.0, 2.0)


def _compute(a):
    out = {
        "bits": random.random_bits(a["seed"], (4, 9), first_row=3),
        "bits_seed64": random.random_bits(a["seed64"], (2, 5)),
        "uniform": random.uniform(a["seed"], (3, 6), first_row=1),
    }
    gt = (a["gt_boxes"], a["gt_labels"], a["image_sizes"])
    out["anchor_labels"], out["anchor_targets"] = targets.assign_anchor_targets(
        a["anchors"], *gt, a["seed"], batch_size=16, first_row=1
    )
    out["anchor_full_labels"], out["anchor_full_targets"] = targets.assign_anchor_targets(
        a["anchors"], *gt, a["seed"], batch_size=a["anchors"].shape[0], positive_fraction=1.0
    )
    out["anchor_centre_labels"], _ = targets.assign_anchor_targets(
        a["anchors"], *gt, a["seed"], batch_size=12, allowed_border=None
    )
    out["sampled"] = targets.sample_balanced(a["positive"], a["negative"], a["seed"], 7, 0.4, first_row=2)

    roi = targets.assign_roi_targets(a["rois"], a["roi_valid"], a["gt_boxes"], a["gt_labels"])
    out.update({f"roi_{k}": v for k, v in roi.items()})
    out["ohem"] = targets.ohem_select(a["roi_loss"], roi["valid"], np.int64(5))  # a config value from numpy
    out["random_rois"] = targets.random_roi_select(roi["labels"], roi["valid"], a["seed"] + 1, 6, 0.5, 2)

    out["rpn_cls"], out["rpn_box"] = losses.rpn_losses(
        a["rpn_logits"], a["rpn_deltas"], a["rpn_labels"], a["rpn_targets"]
    )
    head = (a["class_logits"], a["box_deltas"], a["head_labels"], a["head_targets"])
    out["per_roi_cls"], out["per_roi_box"] = losses.per_roi_losses(*head)
    out["head_cls"], out["head_box"] = losses.head_losses(*head, a["head_weights"])
    out["smooth_l1"] = losses.smooth_l1(a["diff"], 1.0 / 9.0)

    out["encoded"] = boxes.encode(a["rois"], ops.flip(a["rois"], axis=1), std=RFCNConfig.box_std)
    out["decoded"] = boxes.decode(a["rois"], a["roi_deltas"], std=RFCNConfig.box_std)
    out["iou"] = boxes.iou(a["rois"], a["gt_boxes"])
    out["clipped"] = boxes.clip(a["wide_rois"], a["image_sizes"])
    out["grid"] = anchors.anchor_grid(3, 5, 16, SCALES, RATIOS)
    flat_logits = ops.reshape(a["rpn_logits"], (2, 3, 5, -1))
    flat_deltas = ops.reshape(a["rpn_deltas"], (2, 3, 5, -1))
    out["layer_grid"] = AnchorGrid(16, SCALES, RATIOS)(flat_logits)
    out["flat_logits"], out["flat_deltas"] = flatten_rpn(flat_logits, flat_deltas)
    return out


def _gradients(fn, *values):
    """Gradients of ``sum(fn(*values))`` with respect to every value, on this backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.grad(lambda *v: sum(fn(*v)), argnums=tuple(range(len(values))))(*values)
    if backend == "torch":
        import torch

        variables = [torch.tensor(v, requires_grad=True) for v in values]
        sum(fn(*variables)).backward()
        return [v.grad for v in variables]
    import tensorflow as tf

    variables = [tf.Variable(v) for v in values]
    with tf.GradientTape() as tape:
        total = sum(fn(*variables))
    return tape.gradient(total, variables)


def run_all(**arrays):
    """Every case → dict of numpy arrays (gradients of the nothing-sampled losses too)."""
    compute = _compute
    if keras.backend.backend() == "jax":
        import jax

        compute = jax.jit(_compute)
    out = compute({k: ops.convert_to_tensor(v) for k, v in arrays.items()})
    nothing = np.full_like(arrays["rpn_labels"], -1)
    out["rpn_nothing_grad_logits"], out["rpn_nothing_grad_deltas"] = _gradients(
        lambda x, d: losses.rpn_losses(x, d, nothing, arrays["rpn_targets"]),
        arrays["rpn_logits"],
        arrays["rpn_deltas"],
    )
    no_weights = np.zeros_like(arrays["head_weights"])
    out["head_nothing_grad_logits"], out["head_nothing_grad_deltas"] = _gradients(
        lambda x, d: losses.head_losses(x, d, arrays["head_labels"], arrays["head_targets"], no_weights),
        arrays["class_logits"],
        arrays["box_deltas"],
    )
    return {k: ops.convert_to_numpy(v) for k, v in out.items()}
