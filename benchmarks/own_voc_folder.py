"""A user-like Pascal-VOC folder (not rfcn_shapes) to check that ``rfcn-tf train --small``
learns someone's own data with its default recipe.

The dataset, written by :func:`make_voc_folder`:

- 3 classes, none of them in rfcn_shapes: ``cross`` (a plus sign, tilted up to ±20°),
  ``hexagon`` (any rotation) and ``crescent`` (a disk with an offset disk cut out),
  drawn anti-aliased with PIL ImageDraw, filled with a random colour and a slight shading
  ramp, stretched by a random aspect distortion (up to 1.5 : 1 either way);
- 1–4 objects per image (fewer when placement fails), drawn 20–120 px on their longer
  side; boxes of any two objects overlap with IoU ≤ 0.3, every object keeps ≥ 55 % of
  its pixels visible, about 10 % are cut by the image border (``<truncated>1``);
- backgrounds of smooth two-colour linear gradients plus a radial bump, soft blurred
  blobs, sharp random lines (a few also drawn over the objects) and mild pixel noise;
- image sides drawn independently in 150–300 px (non-square);
- files: 70 % RGB JPEG, 20 % RGB PNG, 10 % grayscale ("L") JPEG (exact within each block
  of 10 consecutive images), each named in the XML ``<filename>`` (``<id>.jpg`` /
  ``<id>.png``);
- ``<difficult>1</difficult>`` on the heavily occluded (< 80 % visible) and the tiny
  (longer box side < 20 px) objects: about 5 %; one image in each block of 20 has no
  object at all (its XML has no ``<object>``);
- boxes are the extents of each object's visible pixels, written 1-based inclusive;
- ``ImageSets/Main/{train,val,test}.txt``; image ids ``<split>_<i:05d>``.

Deterministic for a seed: the content of image ``i`` of split ``s`` comes from
``numpy.random.default_rng([seed, s, i])`` (the file format and empty-image choice from
per-block generators), so changing the split sizes leaves the earlier images unchanged.

Run (writes /tmp/own_voc, then trains and evaluates with the ``rfcn-tf`` CLI next to
this interpreter; on a 2-core CPU the training takes a while)::

    .venv/bin/python benchmarks/own_voc_folder.py --run
    .venv/bin/python benchmarks/own_voc_folder.py --run --train-seeds 0 1 2
    .venv/bin/python benchmarks/own_voc_folder.py --run --train-args "--epochs 8 --lr 5e-4"
    .venv/bin/python benchmarks/own_voc_folder.py            # only write the folder

``--train-args`` come after the fixed flags, so they override them (argparse keeps the
last value). Each run writes ``ROOT/runs/seed<S>/`` (an existing one is renamed to
``seed<S>.prev`` first, so Keras' BackupAndRestore cannot silently resume an old run) and
the table at the end is also saved as ``ROOT/runs/summary.json``.
"""

import argparse
import colorsys
import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("cross", "hexagon", "crescent")
SPLITS = ("train", "val", "test")

MIN_SIDE, MAX_SIDE = 150, 300  # each image side, independently
MIN_OBJECT, MAX_OBJECT = 20, 120  # longer side of an object's (undistorted) extent
MAX_ASPECT = 1.5
MAX_IOU = 0.3
MIN_VISIBLE = 0.55  # placement is rejected when an object would keep less than this
DIFFICULT_VISIBLE = 0.8  # ...and an object keeping less than this is difficult
DIFFICULT_SIZE = 20  # an object whose box's longer side is below this is difficult
TRUNCATED_FRACTION = 0.1
MIN_CONTRAST_RGB = 80.0
MIN_CONTRAST_GRAY = 45.0
PLACEMENT_TRIES = 40
SUPERSAMPLE = 4

# Per block of 10 consecutive images: 7 RGB JPEG, 2 PNG, 1 grayscale JPEG.
FORMAT_BLOCK = ["jpeg"] * 7 + ["png"] * 2 + ["gray"]
EMPTY_BLOCK = 20  # one image without objects in each block of this many
_FORMAT_STREAM, _EMPTY_STREAM = 101, 102  # extra SeedSequence words for the block draws

_ID_PATTERN = re.compile(r"^(train|val|test)_\d{5}\.(xml|jpg|png)$")


# --------------------------------------------------------------------------- shapes


def _unit_polygons(name, rng):
    """A class in a [0, 1]² frame: ``(polygon to fill, polygon to cut out or None)``."""
    if name == "cross":
        t = rng.uniform(0.26, 0.42) / 2  # half the arm thickness
        pts = [
            (-t, -0.5),
            (t, -0.5),
            (t, -t),
            (0.5, -t),
            (0.5, t),
            (t, t),
            (t, 0.5),
            (-t, 0.5),
            (-t, t),
            (-0.5, t),
            (-0.5, -t),
            (-t, -t),
        ]
        angle = math.radians(rng.uniform(-20, 20))
        scale = 0.5 / math.hypot(0.5, t)  # the rotated cross stays inside the frame
        outer = _rotate(pts, angle, scale)
        return outer, None
    if name == "hexagon":
        start = rng.uniform(0, math.pi / 3)
        pts = [
            (0.5 * math.cos(start + k * math.pi / 3), 0.5 * math.sin(start + k * math.pi / 3))
            for k in range(6)
        ]
        return _shift(pts), None
    if name == "crescent":
        circle = [
            (0.5 * math.cos(a), 0.5 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 64, endpoint=False)
        ]
        r_cut = rng.uniform(0.36, 0.46)
        offset = rng.uniform(0.22, 0.36)
        direction = rng.uniform(0, 2 * math.pi)
        cx, cy = offset * math.cos(direction), offset * math.sin(direction)
        cut = [(cx + x * r_cut / 0.5, cy + y * r_cut / 0.5) for x, y in circle]
        return _shift(circle), _shift(cut)
    raise ValueError(name)


def _rotate(points, angle, scale=1.0):
    c, s = math.cos(angle), math.sin(angle)
    return _shift([(scale * (x * c - y * s), scale * (x * s + y * c)) for x, y in points])


def _shift(points):
    return [(x + 0.5, y + 0.5) for x, y in points]


def _object_alpha(name, width, height, rng):
    """Anti-aliased coverage float32 [height, width] in 0..1 of one object in its frame."""
    outer, cut = _unit_polygons(name, rng)
    big_w, big_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = Image.new("L", (big_w, big_h), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([(x * (big_w - 1), y * (big_h - 1)) for x, y in outer], fill=255)
    if cut is not None:
        draw.polygon([(x * (big_w - 1), y * (big_h - 1)) for x, y in cut], fill=0)
    small = canvas.resize((width, height), Image.BOX)
    return np.asarray(small, np.float32) / 255.0


# --------------------------------------------------------------------------- backgrounds


def _random_colour(rng, saturation=(0.25, 1.0), value=(0.3, 1.0)):
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array([r, g, b], np.float32) * 255.0


def _background(height, width, rng):
    """float32 [H, W, 3]: gradient + radial bump + blurred blobs + sharp lines."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(theta) + yy * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    c1, c2 = _random_colour(rng, value=(0.2, 1.0)), _random_colour(rng, value=(0.2, 1.0))
    image = c1 + (c2 - c1) * ramp[..., None]
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    sigma = rng.uniform(0.3, 0.8) * max(height, width)
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    image += rng.uniform(-60, 60) * bump[..., None]
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))

    blobs = pil.copy()
    draw = ImageDraw.Draw(blobs)
    for _ in range(rng.integers(1, 6)):
        bw, bh = rng.uniform(15, 90), rng.uniform(15, 90)
        x0, y0 = rng.uniform(-bw / 2, width - bw / 2), rng.uniform(-bh / 2, height - bh / 2)
        draw.ellipse([x0, y0, x0 + bw, y0 + bh], fill=tuple(int(v) for v in _random_colour(rng)))
    pil = blobs.filter(ImageFilter.GaussianBlur(rng.uniform(3, 8)))

    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(2, 9)):
        _random_line(draw, height, width, rng)
    return np.asarray(pil, np.float32)


def _random_line(draw, height, width, rng):
    x0, y0 = rng.uniform(-20, width + 20), rng.uniform(-20, height + 20)
    length, angle = rng.uniform(20, 1.2 * max(height, width)), rng.uniform(0, 2 * math.pi)
    x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
    draw.line(
        [(x0, y0), (x1, y1)], fill=tuple(int(v) for v in _random_colour(rng)), width=int(rng.integers(1, 5))
    )


# --------------------------------------------------------------------------- one image


def _luma(rgb):
    return float(np.dot(rgb, [0.299, 0.587, 0.114]))


def _box_of(mask):
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1  # edge convention


def _iou(a, b):
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def render_image(rng, num_objects, gray=False):
    """→ ``(uint8 [H, W, 3], objects)``; objects: dicts with ``name``, ``box`` (edge
    convention ``[r0, c0, r1 + 1, c1 + 1]`` of the visible pixels), ``difficult``,
    ``truncated``. ``gray``: pick colours by luminance contrast (the image is stored as L)."""
    height, width = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    image = _background(height, width, rng)
    placed = []  # dicts: name, mask (its pixels in the image), visible (not hidden later), truncated
    for _ in range(num_objects):
        name = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
        for _ in range(PLACEMENT_TRIES):
            candidate = _try_place(name, height, width, image, placed, rng, gray)
            if candidate is not None:
                placed.append(candidate)
                break

    # Sharp lines over everything now and then (unlabelled clutter touching objects).
    if rng.uniform() < 0.3:
        pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(rng.integers(1, 3)):
            _random_line(draw, height, width, rng)
        image = np.asarray(pil, np.float32)
    image = image + rng.normal(0.0, rng.uniform(2.0, 6.0), image.shape)
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)

    objects = []
    for obj in placed:
        box = _box_of(obj["visible"])
        fraction = obj["visible"].sum() / obj["mask"].sum()
        longer = max(box[2] - box[0], box[3] - box[1])
        objects.append(
            {
                "name": obj["name"],
                "box": box,
                "truncated": obj["truncated"],
                "difficult": bool(fraction < DIFFICULT_VISIBLE or longer < DIFFICULT_SIZE),
            }
        )
    return pixels, objects


def _try_place(name, height, width, image, placed, rng, gray):
    size = math.exp(rng.uniform(math.log(MIN_OBJECT), math.log(MAX_OBJECT)))
    aspect = math.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
    w = max(int(round(size * min(1.0, aspect))), 8)
    h = max(int(round(size * min(1.0, 1.0 / aspect))), 8)
    if w > width - 2 or h > height - 2:
        return None
    x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    if rng.uniform() < TRUNCATED_FRACTION:  # push 10–35 % of the extent over one border
        side, cut = int(rng.integers(4)), rng.uniform(0.1, 0.35)
        if side == 0:
            x0 = -int(cut * w)
        elif side == 1:
            x0 = width - w + int(cut * w)
        elif side == 2:
            y0 = -int(cut * h)
        else:
            y0 = height - h + int(cut * h)
    alpha = _object_alpha(name, w, h, rng)
    full_area = float((alpha > 0.5).sum())

    # The part inside the image.
    ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
    local = alpha[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    mask = np.zeros((height, width), bool)
    mask[ys, xs] = local > 0.5
    inside = mask.sum()
    if full_area == 0 or inside < 0.6 * full_area or inside < 30:
        return None
    truncated = bool(inside < full_area)

    # The boxes are those of the visible pixels: check them as they would be afterwards
    # (hiding part of an earlier object can shrink its box), every pair.
    box = _box_of(mask)
    visibles = [other["visible"] & ~mask for other in placed]
    if any(v.sum() < MIN_VISIBLE * other["mask"].sum() for v, other in zip(visibles, placed)):
        return None
    boxes = [_box_of(v) for v in visibles] + [box]
    if any(_iou(a, b) > MAX_IOU for k, a in enumerate(boxes) for b in boxes[k + 1 :]):
        return None

    under = image[mask].mean(axis=0)
    best, best_score = None, -1.0
    for _ in range(12):
        colour = _random_colour(rng)
        score = abs(_luma(colour) - _luma(under)) if gray else float(np.linalg.norm(colour - under))
        if score > best_score:
            best, best_score = colour, score
        if score >= (MIN_CONTRAST_GRAY if gray else MIN_CONTRAST_RGB):
            break
    # A shading ramp across the object: brightness up to about ±25 %.
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0 : local.shape[0], 0 : local.shape[1]].astype(np.float32)
    ramp = (xx * math.cos(theta) + yy * math.sin(theta)) / max(w, h)
    shade = 1.0 + rng.uniform(0.0, 0.4) * (ramp - ramp.mean())
    fill = np.clip(best * shade[..., None], 0, 255)
    a = local[..., None]
    image[ys, xs] = a * fill + (1 - a) * image[ys, xs]

    for other, visible in zip(placed, visibles):
        other["visible"] = visible
    return {"name": name, "mask": mask, "visible": mask.copy(), "truncated": truncated}


# --------------------------------------------------------------------------- the folder


def voc_xml(image_id, filename, height, width, depth, objects, folder="own_voc"):
    """One image's VOC annotation; objects: dicts ``name``, ``box`` (edge-convention yxyx
    integers), ``truncated``, ``difficult``."""
    parts = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        f"\t<source><database>{folder} synthetic</database></source>",
        f"\t<size><width>{width}</width><height>{height}</height><depth>{depth}</depth></size>",
        "\t<segmented>0</segmented>",
    ]
    for obj in objects:
        r0, c0, r1, c1 = (int(v) for v in obj["box"])
        # edge convention → VOC 1-based inclusive: first pixel + 1, last pixel (= end) as is.
        parts += [
            "\t<object>",
            f"\t\t<name>{obj['name']}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(obj['truncated'])}</truncated>",
            f"\t\t<difficult>{int(obj['difficult'])}</difficult>",
            f"\t\t<bndbox><xmin>{c0 + 1}</xmin><ymin>{r0 + 1}</ymin>"
            f"<xmax>{c1}</xmax><ymax>{r1}</ymax></bndbox>",
            "\t</object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _block_choice(seed, split_index, i, stream, block):
    """The entry for image i in a seeded shuffle of ``block`` (one shuffle per block)."""
    rng = np.random.default_rng([seed, split_index, i // len(block), stream])
    return block[rng.permutation(len(block))[i % len(block)]]


def make_example(seed, split_index, i):
    """Image i of a split → ``(pixels uint8, file format, objects)``; pure function of its args."""
    fmt = _block_choice(seed, split_index, i, _FORMAT_STREAM, FORMAT_BLOCK)
    empty = _block_choice(seed, split_index, i, _EMPTY_STREAM, [True] + [False] * (EMPTY_BLOCK - 1))
    rng = np.random.default_rng([seed, split_index, i])
    num_objects = 0 if empty else int(rng.integers(1, 5))
    pixels, objects = render_image(rng, num_objects, gray=fmt == "gray")
    quality = int(rng.integers(75, 96))
    return pixels, fmt, quality, objects


def _encode(pixels, fmt, quality):
    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(pixels).save(buffer, format="PNG")
    elif fmt == "gray":
        Image.fromarray(pixels).convert("L").save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_voc_folder(root, num_train=1200, num_val=100, num_test=200, seed=0):
    """Write the dataset (see the module docstring) under ``root``; returns ``root``.

    Files of this generator's naming (``<split>_<5 digits>.xml/.jpg/.png``) left over in
    ``Annotations`` / ``JPEGImages`` from an earlier, larger or differently seeded call are
    removed, so the folder holds exactly this call's images; nothing else is touched.
    """
    annotations = os.path.join(root, "Annotations")
    images = os.path.join(root, "JPEGImages")
    sets = os.path.join(root, "ImageSets", "Main")
    for folder in (annotations, images, sets):
        os.makedirs(folder, exist_ok=True)
    written = set()
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val, num_test))):
        ids = []
        for i in range(count):
            image_id = f"{split}_{i:05d}"
            pixels, fmt, quality, objects = make_example(seed, split_index, i)
            filename = image_id + (".png" if fmt == "png" else ".jpg")
            with open(os.path.join(images, filename), "wb") as f:
                f.write(_encode(pixels, fmt, quality))
            height, width = pixels.shape[:2]
            xml = voc_xml(image_id, filename, height, width, 1 if fmt == "gray" else 3, objects)
            with open(os.path.join(annotations, image_id + ".xml"), "w") as f:
                f.write(xml)
            written.update((image_id + ".xml", filename))
            ids.append(image_id)
        with open(os.path.join(sets, split + ".txt"), "w") as f:
            f.write("".join(image_id + "\n" for image_id in ids))
    for folder in (annotations, images):
        for name in os.listdir(folder):
            if _ID_PATTERN.match(name) and name not in written:
                os.remove(os.path.join(folder, name))
    return root


def describe_folder(root):
    """Counts for a printout: images per split and format, objects per class, difficult."""
    import xml.etree.ElementTree as ET

    lines = []
    for split in SPLITS:
        path = os.path.join(root, "ImageSets", "Main", split + ".txt")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            ids = [line.strip() for line in f if line.strip()]
        per_class = {n: 0 for n in CLASS_NAMES}
        formats = {"jpg": 0, "png": 0, "gray jpg": 0}
        difficult = empty = 0
        for image_id in ids:
            tree = ET.parse(os.path.join(root, "Annotations", image_id + ".xml")).getroot()
            filename = tree.findtext("filename")
            depth = tree.findtext("size/depth")
            formats["png" if filename.endswith(".png") else "gray jpg" if depth == "1" else "jpg"] += 1
            objs = tree.findall("object")
            empty += not objs
            for obj in objs:
                per_class[obj.findtext("name")] += 1
                difficult += obj.findtext("difficult") == "1"
        total = sum(per_class.values())
        lines.append(
            f"{split}: {len(ids)} images ({', '.join(f'{v} {k}' for k, v in formats.items())}; "
            f"{empty} empty), {total} objects ({', '.join(f'{v} {k}' for k, v in per_class.items())}; "
            f"{difficult} difficult)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- train + evaluate

_EPOCH = re.compile(r"Epoch (\d+)/(\d+)")
_VAL_MAP = re.compile(r"val_mAP: (nan|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")


def parse_val_map(output):
    """The train command's printed output → ``{epoch (1-based): val_mAP}``.

    Keras' progress bar prints ``val_mAP: 0.1234`` on the last update of each epoch that
    evaluated (``--eval-every``); it is paired with the latest ``Epoch k/N`` header.
    """
    values, epoch = {}, None
    for match in re.finditer(f"{_EPOCH.pattern}|{_VAL_MAP.pattern}", output):
        if match.group(1) is not None:
            epoch = int(match.group(1))
        elif epoch is not None:
            values[epoch] = float(match.group(3))
    return values


def _stream(command, env):
    """Run command, copying its stdout+stderr through as it comes; → (returncode, text)."""
    print("\n$ " + shlex.join(command), flush=True)
    chunks = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)  # not line-buffered: the progress bar uses \r
            if not chunk:
                break
            chunks.append(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        returncode = proc.wait()
    return returncode, b"".join(chunks).decode("utf-8", errors="replace")


def run_seed(root, seed, cli, train_args=(), env=None):
    """Train and evaluate once; → dict with val_mAP per epoch, test mAP and minutes."""
    out_dir = os.path.join(root, "runs", f"seed{seed}")
    if os.path.exists(out_dir):
        previous = out_dir + ".prev"
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(out_dir, previous)
        print(f"moved the earlier {out_dir} to {previous}", flush=True)
    train = [
        cli,
        "train",
        "--small",
        "--dataset",
        root,
        "--split",
        "train",
        "--val-split",
        "val",
        "--min-side",
        "192",
        "--max-side",
        "256",
        "--batch-size",
        "4",
        "--epochs",
        "4",
        "--seed",
        str(seed),
        "--output-dir",
        out_dir,
        *train_args,
    ]
    start = time.monotonic()
    code, output = _stream(train, env)
    result = {
        "seed": seed,
        "train_minutes": (time.monotonic() - start) / 60.0,
        "val_mAP": parse_val_map(output),
        "train_returncode": code,
        "test_mAP": None,
        "eval_minutes": None,
    }
    model = os.path.join(out_dir, "final.keras")
    if code != 0 or not os.path.isfile(model):
        print(f"seed {seed}: training failed (exit status {code}); skipping the evaluation", flush=True)
        return result
    test_json = os.path.join(out_dir, "test.json")
    evaluate = [
        cli,
        "evaluate",
        "--model",
        model,
        "--dataset",
        root,
        "--split",
        "test",
        "--output",
        test_json,
    ]
    start = time.monotonic()
    code, _ = _stream(evaluate, env)
    result["eval_minutes"] = (time.monotonic() - start) / 60.0
    result["eval_returncode"] = code
    if code == 0 and os.path.isfile(test_json):
        with open(test_json) as f:
            result["test_mAP"] = json.load(f)["mAP"]
    return result


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def format_results(results):
    epochs = sorted({e for r in results for e in r["val_mAP"]})
    header = ["seed"] + [f"val_mAP e{e}" for e in epochs] + ["test mAP", "train min", "eval min"]
    rows = [
        [str(r["seed"])]
        + [_fmt(r["val_mAP"].get(e)) for e in epochs]
        + [_fmt(r["test_mAP"]), _fmt(r["train_minutes"], 1), _fmt(r["eval_minutes"], 1)]
        for r in results
    ]
    widths = [max(len(row[k]) for row in [header] + rows) for k in range(len(header))]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default="/tmp/own_voc", help="the VOC folder to write (default /tmp/own_voc)"
    )
    parser.add_argument("--num-train", type=int, default=1200)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--skip-generate", action="store_true", help="reuse the folder already at --root")
    parser.add_argument("--run", action="store_true", help="then train and evaluate with rfcn-tf")
    parser.add_argument(
        "--train-seeds", type=int, nargs="+", default=[0], help="one training run per seed (default 0)"
    )
    parser.add_argument(
        "--train-args",
        default="",
        help='extra flags for rfcn-tf train, e.g. "--epochs 8 --lr 5e-4" (they win)',
    )
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))

    if not args.skip_generate:
        start = time.monotonic()
        make_voc_folder(root, args.num_train, args.num_val, args.num_test, seed=args.seed)
        print(f"wrote {root} in {time.monotonic() - start:.1f} s")
    print(describe_folder(root), flush=True)
    if not args.run:
        return 0

    cli = os.path.join(os.path.dirname(sys.executable), "rfcn-tf")
    if not os.path.isfile(cli):
        parser.error(f"no rfcn-tf executable next to {sys.executable} (expected {cli})")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    train_args = shlex.split(args.train_args)
    results = []
    for seed in args.train_seeds:
        results.append(run_seed(root, seed, cli, train_args, env))
        # Print the table so far after each seed: a long multi-seed run shows progress.
        print("\n" + format_results(results), flush=True)
    summary = os.path.join(root, "runs", "summary.json")
    with open(summary, "w") as f:
        json.dump(
            {
                "dataset_seed": args.seed,
                "sizes": [args.num_train, args.num_val, args.num_test],
                "train_args": train_args,
                "results": results,
            },
            f,
            indent=2,
        )
    print(f"\ndataset {root} (seed {args.seed}); extra train args: {shlex.join(train_args) or 'none'}")
    print(format_results(results))
    print(f"wrote {summary}")
    failed = any(r["train_returncode"] != 0 or r.get("eval_returncode", 0) != 0 for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
