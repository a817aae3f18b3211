"""Helpers shared by the model, export and predict tests."""

import importlib.util
import os

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def benchmark_module(name):
    """``benchmarks/<name>.py`` as a module (benchmarks/ is a folder of scripts, not a
    package)."""
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained_like(model, seed=0):
    """``benchmarks/timing.py``'s ``trained_like``: every BatchNorm of ``model`` gets random
    γ, β, μ, σ² as a trained network has (not the identity statistics of a fresh one, which
    would hide a wrong BatchNorm fold), every conv bias small random values."""
    return benchmark_module("timing").trained_like(model, seed)


def sharpen(model, seed=0):
    """Scale the head's class-map kernels so untrained scores are far from uniform, which
    makes the order of detections well defined (ties at 1/(C+1) would not be)."""
    layer = model.get_layer("class_maps" if model.config.head == "rfcn" else "class_logits")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, kernel.shape).astype(np.float32), bias])


def random_image(height, width, seed):
    """Blocky random RGB uint8 ``[height, width, 3]`` (8 px blocks, so it compresses)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, ((height + 7) // 8, (width + 7) // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]


def write_png(path, image):
    tf.io.write_file(str(path), tf.io.encode_png(image))
    return str(path)


def assert_same_detections_any_order(out, expected, box_atol=1e-2, score_atol=1e-4, tie_atol=None):
    """The same detections image by image — each label, box (within ``box_atol`` px) and
    confidence (within ``score_atol``) found once — in any order: near-tied confidences may
    swap ranks under another graph's rounding (XLA, a frozen graph's convolutions).

    ``tie_atol``: also accept a detection whose box differs when the other output has one of
    its label left over whose confidence is within ``tie_atol`` of it — two candidates tied
    in score, of which NMS kept one or the other (float16 class maps make exact ties common).
    """
    np.testing.assert_array_equal(out["num_detections"], expected["num_detections"])
    for i, n in enumerate(expected["num_detections"]):
        unmatched, missing = list(range(n)), []
        for j in range(n):
            match = [
                k
                for k in unmatched
                if out["labels"][i, k] == expected["labels"][i, j]
                and np.abs(out["boxes"][i, k] - expected["boxes"][i, j]).max() <= box_atol
                and abs(out["confidence"][i, k] - expected["confidence"][i, j]) <= score_atol
            ]
            if match:
                unmatched.remove(match[0])
            else:
                missing.append(j)
        for j in missing:
            tied = [
                k
                for k in unmatched
                if tie_atol is not None
                and out["labels"][i, k] == expected["labels"][i, j]
                and abs(out["confidence"][i, k] - expected["confidence"][i, j]) <= tie_atol
            ]
            assert tied, (i, j, expected["boxes"][i, j], expected["confidence"][i, j])
            unmatched.remove(tied[0])
