"""Tiled inference on a large image of many small objects: AP and recall with and without
``--tile``, the two merges, and the peak memory of a 20000 × 20000 image.

The data (numpy only): squares, disks and triangles of 20–40 px in random colours on a
noisy background, about 200 on a 1600 × 1600 image (spaced so boxes do not overlap).
Training images are 192 × 320 crops' worth of the same scene (the small model's scale,
so a tile is seen as in training): a Pascal-VOC folder trained with ``rfcn-tf train
--small``. Measured on a fresh 1600 × 1600 test image:

- ``whole``: the image given to the detector as it is (resized to its 192 px scale);
- ``tiled/<merge>``: ``predict_tiled`` (tiles 192 × 320, overlap 0.2);
- ``tiles one by one``: the same image cut into its tiles (no overlap), each tile scored
  as an image of its own against the objects it holds (objects cut by the tile count as
  difficult: neither found nor missed) — what the detector does at its scale.

AP is VOC's area AP at IoU 0.5; recall is the fraction of objects that some detection
(score ≥ 0.05, the decoder's threshold) of their class covers at IoU ≥ 0.5.

    python benchmarks/bench_tiling.py --root /tmp/bench_tiling          # data, train, measure
    python benchmarks/bench_tiling.py --root /tmp/bench_tiling --memory 20000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CLASSES = ("square", "disk", "triangle")
DENSITY = 200 / 1600**2  # objects per pixel


def draw_scene(rng, height, width, count):
    """→ (uint8 [H, W, 3], boxes [N, 4] yxyx, labels [N]) with about ``count`` objects of
    20–40 px placed on a jittered grid (no two boxes overlap)."""
    image = rng.normal(110, 25, (height, width, 3)).clip(0, 255).astype(np.uint8)
    cells = max(int(np.sqrt(height * width / max(count, 1))), 44)
    boxes, labels = [], []
    for cy in range(0, height - 43, cells):
        for cx in range(0, width - 43, cells):
            if rng.uniform() > count * cells * cells / (height * width):
                continue
            size = int(rng.integers(20, 41))
            room = min(cells, height - cy, width - cx) - size - 2
            if room < 0:
                continue
            y0, x0 = cy + 1 + int(rng.integers(0, room + 1)), cx + 1 + int(rng.integers(0, room + 1))
            label = int(rng.integers(len(CLASSES)))
            yy, xx = np.mgrid[0:size, 0:size] + 0.5
            if label == 0:
                mask = np.ones((size, size), bool)
            elif label == 1:
                mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 2) ** 2
            else:
                mask = np.abs(xx - size / 2) <= yy / 2
            colour = rng.integers(0, 256, 3)
            while np.abs(colour - 110).max() < 80:
                colour = rng.integers(0, 256, 3)
            patch = image[y0 : y0 + size, x0 : x0 + size]
            patch[mask] = colour
            ys, xs = np.nonzero(mask)
            boxes.append([y0 + ys.min(), x0 + xs.min(), y0 + ys.max() + 1, x0 + xs.max() + 1])
            labels.append(label)
    return image, np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int64)


def write_voc(root, count, seed, size=(192, 320)):
    """A Pascal-VOC folder of ``count`` training images of ``size``."""
    from PIL import Image

    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        image, boxes, labels = draw_scene(rng, *size, round(DENSITY * size[0] * size[1]))
        Image.fromarray(image).save(os.path.join(root, "JPEGImages", f"{i:05d}.png"))
        objects = "".join(
            f"<object><name>{CLASSES[l]}</name><difficult>0</difficult><bndbox><xmin>{int(b[1]) + 1}"
            f"</xmin><ymin>{int(b[0]) + 1}</ymin><xmax>{int(b[3])}</xmax><ymax>{int(b[2])}</ymax>"
            "</bndbox></object>"
            for b, l in zip(boxes, labels)
        )
        with open(os.path.join(root, "Annotations", f"{i:05d}.xml"), "w") as f:
            f.write(
                f"<annotation><filename>{i:05d}.png</filename><size><width>{size[1]}</width>"
                f"<height>{size[0]}</height><depth>3</depth></size>{objects}</annotation>"
            )


def recall(detections, boxes, labels, iou=0.5):
    from keras.utils import bounding_boxes

    if len(boxes) == 0:
        return float("nan")
    found = np.zeros(len(boxes), bool)
    n = detections["num_detections"][0]
    det_boxes, det_labels = detections["boxes"][0, :n], detections["labels"][0, :n]
    if n:
        ious = np.asarray(
            bounding_boxes.compute_iou(boxes.astype(np.float32), det_boxes, bounding_box_format="yxyx")
        )
        found = np.any((ious >= iou) & (labels[:, None] == det_labels[None]), axis=1)
    return float(found.mean())


def as_entry(out, b=0):
    n = out["num_detections"][b]
    return {"boxes": out["boxes"][b, :n], "scores": out["confidence"][b, :n], "labels": out["labels"][b, :n]}


def measure(model_path, seed=1):
    from rfcn_tf import load_detector, predict_tiled, tile_grid
    from rfcn_tf.evaluation import evaluate_detections

    detector, _ = load_detector(model_path)
    rng = np.random.default_rng([seed, 99])
    image, boxes, labels = draw_scene(rng, 1600, 1600, 200)
    truth = {"boxes": boxes, "labels": labels}

    def score(dets, gts):
        return evaluate_detections(dets, gts, metric="voc", num_classes=3)["mAP"]

    rows = {}
    start = time.perf_counter()
    whole = detector(image[None])
    rows["whole image"] = (
        score([as_entry(whole)], [truth]),
        recall(whole, boxes, labels),
        int(whole["num_detections"][0]),
        time.perf_counter() - start,
    )
    for merge in ("nms", "edges"):
        start = time.perf_counter()
        out = predict_tiled(detector, image, overlap=0.2, batch_size=8, merge=merge)
        rows[f"tiled, merge={merge}"] = (
            score([as_entry(out)], [truth]),
            recall(out, boxes, labels),
            int(out["num_detections"][0]),
            time.perf_counter() - start,
        )
    dets, gts, found = [], [], 0
    start = time.perf_counter()
    for y0, x0, y1, x1 in tile_grid(1600, 1600, (192, 320), 0.0):
        out = detector(image[None, y0:y1, x0:x1])
        clipped = np.clip(boxes, [y0, x0, y0, x0], [y1, x1, y1, x1])

        def area(b):
            return np.prod(b[:, 2:] - b[:, :2], axis=1)

        visible = area(clipped) / area(boxes)
        inside = visible > 0
        dets.append(as_entry(out))
        gts.append(
            {
                "boxes": clipped[inside] - [y0, x0, y0, x0],
                "labels": labels[inside],
                "difficult": visible[inside] < 1,
            }
        )
        found += int(out["num_detections"][0])
    rows["tiles one by one"] = (score(dets, gts), float("nan"), found, time.perf_counter() - start)
    print(f"test image 1600 x 1600, {len(boxes)} objects of 20-40 px")
    print(f"{'':<22}{'AP':>7}{'recall':>8}{'detections':>12}{'seconds':>9}")
    for name, (ap, rec, n, seconds) in rows.items():
        print(f"{name:<22}{ap:>7.3f}{rec:>8.3f}{n:>12d}{seconds:>9.1f}")
    return rows


def memory(model_path, side):
    """In this process: a ``side × side`` uint8 image (the test scene repeated) through
    ``predict_tiled`` → prints peak RSS (VmHWM) before and after."""
    from rfcn_tf import load_detector, predict_tiled

    detector, _ = load_detector(model_path)
    scene, _, _ = draw_scene(np.random.default_rng(3), 1600, 1600, 200)
    image = np.empty((side, side, 3), np.uint8)
    for y in range(0, side, 1600):
        for x in range(0, side, 1600):
            part = image[y : y + 1600, x : x + 1600]
            part[...] = scene[: part.shape[0], : part.shape[1]]
    detector(scene[None, :192, :320])  # the graph built before the baseline
    before = _peak_mib()
    start = time.perf_counter()
    out = predict_tiled(detector, image, batch_size=8)
    print(
        json.dumps(
            {
                "side": side,
                "image_mib": image.nbytes / 2**20,
                "peak_mib_before": before,
                "peak_mib_after": _peak_mib(),
                "detections": int(out["num_detections"][0]),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


def _peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench_tiling")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="SIDE",
        help="measure the peak memory of a SIDE × SIDE image (a subprocess)",
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_path = os.path.join(args.root, "run", "final.keras")
    if args.memory_child:
        return memory(model_path, args.memory)
    if args.memory:
        subprocess.run(
            [sys.executable, __file__, "--root", args.root, "--memory", str(args.memory), "--memory-child"],
            check=True,
        )
        return None
    if not os.path.isfile(model_path):
        voc = os.path.join(args.root, "voc")
        if not os.path.isdir(voc):
            write_voc(voc, args.train_images, seed=0)
        from rfcn_tf.cli import main as cli

        start = time.perf_counter()
        status = cli(
            [
                "train",
                "--small",
                "--dataset",
                voc,
                "--split",
                "all",
                "--batch-size",
                "4",
                "--epochs",
                str(args.epochs),
                "--output-dir",
                os.path.join(args.root, "run"),
            ]
        )
        print(f"trained in {time.perf_counter() - start:.0f} s")
        if status:
            return status
    rows = measure(model_path)
    with open(os.path.join(args.root, "result.json"), "w") as f:
        json.dump({k: list(v) for k, v in rows.items()}, f, indent=1)
    return None


if __name__ == "__main__":
    sys.exit(main())
