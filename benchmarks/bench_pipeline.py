"""Input-pipeline throughput (images/s, median of several runs); prints figures.

Cases:
  shapes   rfcn_shapes (192 px PNG, TFDS) → make_pipeline(192/192, batch 4, training)
  jpegs    a VOC folder of generated 500 × 375 JPEGs → make_pipeline(600/1000, batch 2, training)
  augment  each --augment preset at the small model's scale (192/320, batch 4) on decoded
           400 × 400 tiles, and on 2400 × 2400 photos cut by crop="auto" into 192 × 320 windows

The goal is to never starve CPU training: several times the training step rate (the small
model's step on 4 images takes about 0.1–0.3 s on the CPUs seen so far: 13–40 images/s).

    python benchmarks/bench_pipeline.py [--data-dir DIR] [--runs 5] [--images 200] [--only augment]
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from rfcn_tf.data import AUGMENT_PRESETS, load_examples, make_pipeline
from rfcn_tf.data.shapes import CLASS_NAMES, render_example


def _write_jpeg_voc(root, count):
    """A VOC folder of ``count`` 375 × 500 JPEGs cropped from shape drawings."""
    from PIL import Image

    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        drawn = render_example(rng, 500, num_objects=4)
        Image.fromarray(drawn["image"][:375]).save(
            os.path.join(root, "JPEGImages", f"{i:05d}.jpg"), quality=90
        )
        objects = "".join(
            f"<object><name>{CLASS_NAMES[label]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{int(b[1]) + 1}</xmin><ymin>{int(b[0]) + 1}</ymin>"
            f"<xmax>{int(b[3])}</xmax><ymax>{min(int(b[2]), 375)}</ymax></bndbox></object>"
            for b, label in zip(drawn["boxes"], drawn["labels"])
            if b[0] < 370
        )
        with open(os.path.join(root, "Annotations", f"{i:05d}.xml"), "w") as f:
            f.write(
                f"<annotation><filename>{i:05d}.jpg</filename><size><width>500</width>"
                f"<height>375</height></size>{objects}</annotation>"
            )


def _throughput(dataset, runs):
    """Median images/s over ``runs`` full passes (a first pass warms up)."""
    rates = []
    for run in range(runs + 1):
        start, images = time.perf_counter(), 0
        for inputs, _ in dataset:
            images += int(inputs["images"].shape[0])
        if run:
            rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates), min(rates), max(rates)


def _tiles(count, side, rng):
    """``count`` decoded ``side`` × ``side`` images of shape drawings (cached in memory, so the
    figure is the augmentation's cost, not decoding's)."""
    drawn = [render_example(rng, side, num_objects=6) for _ in range(count)]
    spec = {
        "image": tf.TensorSpec([side, side, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "labels": tf.TensorSpec([None], tf.int32),
        "difficult": tf.TensorSpec([None], tf.bool),
    }
    return tf.data.Dataset.from_generator(
        lambda: (
            {
                "image": d["image"],
                "boxes": d["boxes"],
                "labels": d["labels"],
                "difficult": np.zeros(len(d["labels"]), bool),
            }
            for d in drawn
        ),
        output_signature=spec,
    ).cache()


def _augment_cases(runs):
    rng = np.random.default_rng(0)
    for side, count, crop in ((400, 64, "auto"), (2400, 16, "auto")):
        examples = _tiles(count, side, rng)
        for preset in AUGMENT_PRESETS:
            batches = make_pipeline(
                examples, 4, min_side=192, max_side=320, training=True, seed=0, augment=preset, crop=crop
            )
            median, low, high = _throughput(batches, runs)
            what = "resized to 192" if side <= 640 else "cut into 192 × 320 windows"
            print(
                f"{side}x{side} tiles ({what}) batch 4 augment={preset}: "
                f"{median:.0f} images/s (min {low:.0f}, max {high:.0f})",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir for rfcn_shapes (default: TFDS's)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=200, help="JPEGs to generate")
    parser.add_argument("--only", choices=("augment",), default=None, help="run one case only")
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}")
    if args.only == "augment":
        _augment_cases(args.runs)
        return

    start = time.perf_counter()
    examples, _ = load_examples("rfcn_shapes", "train", data_dir=args.data_dir)
    print(f"rfcn_shapes ready in {time.perf_counter() - start:.1f} s")
    shapes = make_pipeline(examples, 4, min_side=192, max_side=192, training=True, seed=0)
    median, low, high = _throughput(shapes, args.runs)
    print(f"shapes 192/192 batch 4 training: {median:.0f} images/s (min {low:.0f}, max {high:.0f})")

    with tempfile.TemporaryDirectory() as root:
        _write_jpeg_voc(root, args.images)
        examples, _ = load_examples(root, shuffle=True, seed=0)
        jpegs = make_pipeline(examples, 2, min_side=600, max_side=1000, training=True, seed=0)
        median, low, high = _throughput(jpegs, args.runs)
        print(
            f"{args.images} JPEGs 500x375 → 600/1000 batch 2 training: "
            f"{median:.0f} images/s (min {low:.0f}, max {high:.0f})"
        )
    _augment_cases(args.runs)


if __name__ == "__main__":
    main()
