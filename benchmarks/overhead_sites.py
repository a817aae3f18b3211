"""A synthetic domain-shift benchmark: large overhead "photos" of several sites, one class.

Issue 20's aerial photos (one class, objects 5–100 px, up to ~600 per photo, photos of
1000–2500 px) showed a model trained on tiles of one photo doing well on tiles of that
photo (val) and badly on another site. This generator imitates that situation:

- **Scenes**: photos of ``--photo-size`` px per side (default 2000–4000; ``--cpu``:
  1000–1400), drawn as a ground of two colours mixed by a smooth random field, fields
  (polygons with stripe texture), roads (thick polylines with dashed white markings) and
  unlabelled distractors (grey rocks, thin fences).
- **Objects** (one class, ``object``): cars (rotated rectangles with a windscreen band),
  roofs (rotated rectangles, two-tone across the ridge) and trees (irregular blobs with
  darker spots), ``--object-size`` px on the longer side (default 10–60, log-uniform),
  each with a cast shadow, placed in clusters (aligned within a cluster) and at random,
  never overlapping. Boxes are the tight extents of the drawn body (alpha ≥ 0.5).
- **Sites** (``SITES``): A "temperate", B "arid", C "overcast" differ in ground and object
  palettes, texture (stripes, grain), lighting (gain, colour cast, a brightness gradient,
  sun direction and shadow strength) and density (objects per megapixel).

``--make DIR`` writes a Pascal-VOC folder for ``rfcn_tf.data.load_examples(DIR, split)``:

- site A: ``--photos-a`` photos cut into ``--tile`` × ``--tile`` tiles (a grid, no
  overlap), the tiles split at random 85 / 15 into ``train`` / ``val`` — as the issue's
  author did: val tiles come from the training photos;
- site B (and C): ``--photos-b`` (``--photos-c``) photos: whole photos in ``photos_B``
  (``photos_C``), their tiles in ``test`` (``test_C``); A's whole photos in ``photos_A``;
- ``--unlabelled-b`` further site-B photos, JPEGs without labels in ``unlabelled_B/``.

A box cut by a tile border keeps the visible part; an object keeping less than half of its
pixels in a tile is marked difficult there (ignored by the evaluation).

Deterministic: photo ``i`` of site ``s`` comes from ``numpy.random.default_rng([seed, s, i])``.

``--run DIR`` trains on site A with the ``rfcn-tf`` CLI next to this interpreter, once per
row and ``--seeds`` seed: a row per ``--augments`` preset (``rfcn-tf train --small``, its
default flags plus ``--augment X``, omitted for ``default``; images at the tile size) and
per ``--variant 'NAME=FLAGS'`` (other train flags). It then measures the val mAP (site A
tiles, after the last epoch, from the training's output), ``rfcn-tf evaluate``'s mAP on
``test`` (site B tiles) and ``test_C`` (site C tiles), the test and val mAP again after
``rfcn-tf adapt`` on ``unlabelled_B/`` (the model's BatchNorm statistics from site B's
unlabelled photos, tiled), and on site B's whole photos AP and recall (IoU 0.5, detections
scoring ≥ 0.05, from ``rfcn-tf predict --max-detections``) without and with ``--tile``.
One table: per row, min–max over seeds, with the site gap (val − test mAP). Run::

    python benchmarks/overhead_sites.py --make /tmp/sites --cpu         # CPU-sized set
    python benchmarks/overhead_sites.py --run /tmp/sites --cpu          # 6 runs of 4–8 min each
    python benchmarks/overhead_sites.py --run /tmp/sites --cpu --augments default \
        --variant 'auto anchors=--anchors auto' --variant 'stride 16=--feature-stride 16'
    python benchmarks/overhead_sites.py --make /tmp/big --run /tmp/big --augments default \
        standard strong overhead --seeds 0 1 2                           # the full-size run
"""

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling benchmark module
from own_voc_folder import _stream, parse_val_map, voc_xml  # noqa: E402

from rfcn_tf.data.shapes import mask_box  # noqa: E402

CLASS_NAME = "object"
SUPERSAMPLE = 2  # objects are drawn at twice the resolution, then box-filtered
MIN_VISIBLE = 0.5  # in a tile, an object keeping less of its pixels is difficult
VAL_FRACTION = 0.15
UNLABELLED = "unlabelled_B"  # site-B photos without labels, for rfcn-tf adapt

# Colours are RGB 0–255; "sun" is the direction shadows fall (radians, 0 = +x, image y down).
SITES = {
    "A": dict(
        name="temperate",
        ground=((92, 128, 64), (128, 150, 84)),
        field=((150, 170, 90), (180, 160, 100)),
        road=(110, 110, 115),
        cars=((200, 40, 40), (230, 230, 235), (40, 60, 150), (30, 30, 35), (200, 200, 60)),
        roofs=((150, 70, 60), (120, 120, 130)),
        tree=(40, 90, 40),
        density=80.0,
        grain=6.0,
        stripes=0.12,
        gain=1.0,
        cast=(1.0, 1.0, 1.0),
        gradient=0.10,
        sun=0.8,
        shadow=(0.55, 0.35),
    ),
    "B": dict(
        name="arid",
        ground=((196, 170, 120), (170, 140, 95)),
        field=((210, 190, 140), (150, 130, 80)),
        road=(160, 120, 95),
        cars=((180, 180, 170), (120, 110, 100), (200, 190, 160), (90, 70, 60)),
        roofs=((200, 200, 190), (170, 110, 80)),
        tree=(95, 105, 55),
        density=140.0,
        grain=12.0,
        stripes=0.04,
        gain=1.15,
        cast=(1.05, 1.0, 0.9),
        gradient=0.25,
        sun=2.6,
        shadow=(0.45, 0.6),
    ),
    "C": dict(
        name="overcast",
        ground=((100, 108, 112), (80, 92, 90)),
        field=((120, 125, 110), (95, 100, 105)),
        road=(70, 72, 78),
        cars=((150, 160, 170), (60, 70, 90), (170, 60, 60), (200, 205, 210)),
        roofs=((90, 95, 110), (130, 100, 90)),
        tree=(50, 75, 60),
        density=200.0,
        grain=9.0,
        stripes=0.08,
        gain=0.8,
        cast=(0.92, 0.98, 1.08),
        gradient=0.05,
        sun=-1.9,
        shadow=(0.8, 0.2),
    ),
}
SITE_KEYS = tuple(SITES)


# --------------------------------------------------------------------------- drawing


def _blend(image, alpha, colour):
    """In place: ``image = image·(1 − α) + colour·α`` (float [H, W, 3], α [H, W] or [H, W, 1])."""
    alpha = alpha[..., None] if alpha.ndim == 2 else alpha
    image *= 1.0 - alpha
    image += alpha * np.asarray(colour, np.float32)


def _smooth_field(rng, height, width, cells):
    """float32 [H, W] in 0..1: bilinear upsampling of a ``cells``-coarse uniform grid."""
    grid = Image.fromarray((rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((width, height), Image.BILINEAR), np.float32) / 255.0


def _polygon_alpha(height, width, polygons):
    """Anti-aliased coverage float32 [H, W] of filled polygons (x, y pairs; a list of them)."""
    canvas = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in polygon], fill=255)
    return np.asarray(canvas.resize((width, height), Image.BOX), np.float32) / 255.0


def _rectangle(cx, cy, length, width, angle):
    """Corners (x, y) of a ``length × width`` rectangle centred on (cx, cy), long axis at ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    half = [
        (length / 2, width / 2),
        (-length / 2, width / 2),
        (-length / 2, -width / 2),
        (length / 2, -width / 2),
    ]
    return [(cx + u * c - v * s, cy + u * s + v * c) for u, v in half]


def _jitter(rng, colour, amount=18.0):
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255)


def scene_ground(rng, site, height, width):
    """The ground, fields, roads and distractors of one scene: float32 [H, W, 3]."""
    p = SITES[site]
    mix = _smooth_field(rng, height, width, int(rng.integers(3, 7)))
    c0, c1 = (np.asarray(c, np.float32) for c in p["ground"])
    image = c0 + (c1 - c0) * mix[..., None]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    for _ in range(int(rng.integers(2, 6))):  # fields: quadrilaterals with stripes
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.15, 0.4) * min(height, width)
        corners = [
            (cx + size * math.cos(a) * rng.uniform(0.6, 1.0), cy + size * math.sin(a) * rng.uniform(0.6, 1.0))
            for a in np.sort(rng.uniform(0, 2 * math.pi, 4))
        ]
        alpha = _polygon_alpha(height, width, [corners])
        theta, period = rng.uniform(0, math.pi), rng.uniform(6.0, 20.0)
        stripes = 1.0 + p["stripes"] * np.sin(
            2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period
        )
        colour = p["field"][int(rng.integers(len(p["field"])))]
        _blend(image, alpha, _jitter(rng, colour)[None, None] * stripes[..., None])

    roads = Image.new("L", (width, height), 0)
    marks = Image.new("L", (width, height), 0)
    draw_road, draw_mark = ImageDraw.Draw(roads), ImageDraw.Draw(marks)
    for _ in range(int(rng.integers(1, 4))):  # roads: polylines across the scene
        points = [(rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height) for _ in range(3)]
        road_width = int(rng.uniform(0.012, 0.025) * min(height, width)) + 6
        draw_road.line(points, fill=255, width=road_width, joint="curve")
        for (x0, y0), (x1, y1) in zip(points, points[1:]):  # dashed centre line
            length = math.hypot(x1 - x0, y1 - y0)
            for t in np.arange(0, length, 24.0):
                u, v = t / length, min(t + 10.0, length) / length
                draw_mark.line(
                    [(x0 + u * (x1 - x0), y0 + u * (y1 - y0)), (x0 + v * (x1 - x0), y0 + v * (y1 - y0))],
                    fill=255,
                    width=2,
                )
    _blend(image, np.asarray(roads, np.float32) / 255.0, _jitter(rng, p["road"], 8.0))
    _blend(image, np.asarray(marks, np.float32) / 255.0 * 0.9, (235, 235, 230))

    clutter = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(clutter)
    area = height * width / 1e6
    for _ in range(int(rng.poisson(60 * area))):  # rocks: small irregular polygons, no shadow
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2.0, 7.0)
        angles = np.sort(rng.uniform(0, 2 * math.pi, 6))
        draw.polygon(
            [
                (
                    (cx + r * rng.uniform(0.6, 1.0) * math.cos(a)) * SUPERSAMPLE,
                    (cy + r * rng.uniform(0.6, 1.0) * math.sin(a)) * SUPERSAMPLE,
                )
                for a in angles
            ],
            fill=255,
        )
    for _ in range(int(rng.poisson(6 * area))):  # fences: long thin lines
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        a, length = rng.uniform(0, 2 * math.pi), rng.uniform(50, 300)
        draw.line(
            [
                (x0 * SUPERSAMPLE, y0 * SUPERSAMPLE),
                ((x0 + length * math.cos(a)) * SUPERSAMPLE, (y0 + length * math.sin(a)) * SUPERSAMPLE),
            ],
            fill=255,
            width=SUPERSAMPLE,
        )
    alpha = np.asarray(clutter.resize((width, height), Image.BOX), np.float32) / 255.0
    _blend(image, alpha * 0.85, _jitter(rng, (140, 138, 130), 10.0))
    return image


def _object_layers(rng, site, kind, cx, cy, length, angle):
    """One object as polygons → ``(body, parts)``: body polygon; parts ``[(polygon, colour)]``
    drawn over it, the first being the body's own colour."""
    p = SITES[site]
    if kind == "car":
        width = length / rng.uniform(1.8, 2.4)
        body = _rectangle(cx, cy, length, width, angle)
        colour = _jitter(rng, p["cars"][int(rng.integers(len(p["cars"])))], 12.0)
        shift = 0.18 * length  # the windscreen, a dark band towards the front
        glass = _rectangle(
            cx + shift * math.cos(angle), cy + shift * math.sin(angle), 0.18 * length, 0.8 * width, angle
        )
        return body, [(body, colour), (glass, colour * 0.35)]
    if kind == "roof":
        width = length / rng.uniform(1.0, 1.6)
        body = _rectangle(cx, cy, length, width, angle)
        colour = _jitter(rng, p["roofs"][int(rng.integers(len(p["roofs"])))], 15.0)
        ox, oy = -math.sin(angle) * width / 4, math.cos(angle) * width / 4  # half across the ridge
        half = _rectangle(cx + ox, cy + oy, length, width / 2, angle)
        return body, [(body, colour), (half, colour * 0.75)]
    # tree: an irregular blob with a few darker spots
    angles = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    radii = length / 2 * (1.0 + 0.12 * np.sin(3 * angles + rng.uniform(0, 6)) + rng.uniform(-0.06, 0.06, 20))
    body = [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles)]
    colour = _jitter(rng, p["tree"], 10.0)
    parts = [(body, colour)]
    for _ in range(3):
        a, d, r = rng.uniform(0, 2 * math.pi), rng.uniform(0, length / 4), length / rng.uniform(6, 9)
        sx, sy = cx + d * math.cos(a), cy + d * math.sin(a)
        parts.append(([(sx + r * math.cos(t), sy + r * math.sin(t)) for t in angles[::2]], colour * 0.7))
    return body, parts


def place_objects(rng, site, height, width, object_size=(10, 60)):
    """Object layouts of one scene: dicts ``kind``, ``body`` (polygon), ``parts``,
    ``shadow`` (polygon), ``box`` (the polygon's extent, for spacing). Density from the site."""
    p = SITES[site]
    count = int(rng.poisson(p["density"] * height * width / 1e6))
    clusters = [
        (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, math.pi), rng.uniform(20, 80))
        for _ in range(max(1, count // 25))
    ]
    log_lo, log_hi = math.log(object_size[0]), math.log(object_size[1])
    sun, (strength, reach) = p["sun"], p["shadow"]
    objects, boxes = [], np.zeros((0, 4))
    for _ in range(count):
        for _ in range(20):  # placement tries
            kind = ("car", "roof", "tree")[int(rng.choice(3, p=(0.5, 0.2, 0.3)))]
            length = math.exp(rng.uniform(log_lo, log_hi))
            if rng.uniform() < 0.6:  # in a cluster, aligned with it
                x, y, a, spread = clusters[int(rng.integers(len(clusters)))]
                cx, cy, angle = rng.normal(x, spread), rng.normal(y, spread), a + rng.normal(0, 0.1)
            else:
                cx, cy, angle = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, math.pi)
            body, parts = _object_layers(rng, site, kind, cx, cy, length, angle)
            xs, ys = [x for x, _ in body], [y for _, y in body]
            box = np.array([min(ys) - 2, min(xs) - 2, max(ys) + 2, max(xs) + 2])
            if box[0] < 0 or box[1] < 0 or box[2] > height or box[3] > width:
                continue  # whole objects only
            if len(boxes) and np.any(
                (np.minimum(boxes[:, 2:], box[2:]) > np.maximum(boxes[:, :2], box[:2])).all(axis=1)
            ):
                continue  # no overlap with an earlier object (with a 2 px margin)
            dx, dy = reach * length * math.cos(sun), reach * length * math.sin(sun)
            objects.append(
                {
                    "kind": kind,
                    "body": body,
                    "parts": parts,
                    "strength": strength,
                    "shadow": [(x + dx, y + dy) for x, y in body],
                }
            )
            boxes = np.concatenate([boxes, box[None]])
            break
    return objects


def _local_frame(polygons, height, width):
    """The integer window ``(y0, x0, y1, x1)`` of the image holding ``polygons`` (clipped)."""
    xs = [x for poly in polygons for x, _ in poly]
    ys = [y for poly in polygons for _, y in poly]
    return (
        max(int(math.floor(min(ys))) - 1, 0),
        max(int(math.floor(min(xs))) - 1, 0),
        min(int(math.ceil(max(ys))) + 1, height),
        min(int(math.ceil(max(xs))) + 1, width),
    )


def paint_objects(image, objects):
    """Shadows (darkening), then bodies, onto float image [H, W, 3] in place →
    ``(boxes float32 [N, 4] edge-convention yxyx, masks [(y0, x0, bool [h, w])])``: each
    body's pixels of alpha ≥ 0.5 and their tight box."""
    height, width = image.shape[:2]
    for obj in objects:
        y0, x0, y1, x1 = _local_frame([obj["shadow"]], height, width)
        if y1 <= y0 or x1 <= x0:
            continue
        alpha = _polygon_alpha(y1 - y0, x1 - x0, [[(x - x0, y - y0) for x, y in obj["shadow"]]])
        image[y0:y1, x0:x1] *= 1.0 - obj["strength"] * alpha[..., None]
    boxes, masks = [], []
    for obj in objects:
        y0, x0, y1, x1 = _local_frame([obj["body"]], height, width)
        window = image[y0:y1, x0:x1]
        for polygon, colour in obj["parts"]:
            _blend(window, _polygon_alpha(y1 - y0, x1 - x0, [[(x - x0, y - y0) for x, y in polygon]]), colour)
        mask = _polygon_alpha(y1 - y0, x1 - x0, [[(x - x0, y - y0) for x, y in obj["body"]]]) >= 0.5
        if mask.any():
            boxes.append(mask_box(mask) + np.array([y0, x0, y0, x0], np.float32))
            masks.append((y0, x0, mask))
    return np.array(boxes, np.float32).reshape(-1, 4), masks


def finish(rng, site, image):
    """Lighting (gain, colour cast, a brightness gradient), texture grain, blur → uint8."""
    p = SITES[site]
    height, width = image.shape[:2]
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx * math.cos(theta) + yy * math.sin(theta)) / max(height, width)
    light = p["gain"] * (1.0 + p["gradient"] * (ramp - ramp.mean()))
    image = image * light[..., None] * np.asarray(p["cast"], np.float32)
    image += rng.normal(0.0, p["grain"], (height, width, 1)).astype(np.float32)  # grain, all channels
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(0.6)))


def render_scene(seed, site, index, photo_size=(2000, 4000), object_size=(10, 60)):
    """Photo ``index`` of ``site`` → dict ``image`` uint8 [H, W, 3], ``boxes`` float32
    [N, 4] (edge-convention yxyx pixels), ``masks`` (per box ``(y0, x0, bool [h, w])``)."""
    rng = np.random.default_rng([seed, SITE_KEYS.index(site), index])
    height, width = (int(v) for v in rng.integers(photo_size[0], photo_size[1] + 1, size=2))
    image = scene_ground(rng, site, height, width)
    objects = place_objects(rng, site, height, width, object_size)
    boxes, masks = paint_objects(image, objects)
    return {"image": finish(rng, site, image), "boxes": boxes, "masks": masks}


# --------------------------------------------------------------------------- the VOC folder


def tile_objects(boxes, masks, y0, x0, size):
    """The objects of one tile ``[y0, y0 + size) × [x0, x0 + size)`` → VOC object dicts
    (box relative to the tile: the extent of the body's pixels inside it; difficult when
    fewer than ``MIN_VISIBLE`` of them are)."""
    objects = []
    for box, (my, mx, mask) in zip(boxes, masks):
        if box[0] >= y0 + size or box[2] <= y0 or box[1] >= x0 + size or box[3] <= x0:
            continue
        inside = mask[max(y0 - my, 0) : max(y0 + size - my, 0), max(x0 - mx, 0) : max(x0 + size - mx, 0)]
        if not inside.any():
            continue
        ty, tx = max(my - y0, 0), max(mx - x0, 0)
        r0, c0, r1, c1 = mask_box(inside) + np.array([ty, tx, ty, tx])
        fraction = inside.sum() / mask.sum()
        objects.append(
            {
                "name": CLASS_NAME,
                "box": (r0, c0, r1, c1),
                "truncated": bool(fraction < 1.0),
                "difficult": bool(fraction < MIN_VISIBLE),
            }
        )
    return objects


def _write(root, image_id, pixels, objects):
    filename = image_id + ".jpg"
    Image.fromarray(pixels).save(os.path.join(root, "JPEGImages", filename), quality=90)
    with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
        f.write(
            voc_xml(image_id, filename, pixels.shape[0], pixels.shape[1], 3, objects, folder="overhead_sites")
        )


def make_sites(
    root, photos=None, tile=400, photo_size=(2000, 4000), object_size=(10, 60), seed=0, unlabelled=0
):
    """Write the VOC folder (module docstring) → ``{split: [image ids]}``.

    photos: ``{site: number of photos}`` (default A 4, B 2, C 2). unlabelled: further site-B
    photos, JPEGs alone in ``unlabelled_B/`` (the photos after the labelled ones: they
    leave every split unchanged).
    """
    photos = photos or {"A": 4, "B": 2, "C": 2}
    if os.path.exists(root):  # replace an earlier folder of this benchmark, nothing else
        if os.listdir(root) and not os.path.isfile(os.path.join(root, "ImageSets", "Main", "photos_A.txt")):
            raise FileExistsError(
                f"{root} exists and is not a folder this benchmark wrote; choose another --make folder"
            )
        shutil.rmtree(root)
    for folder in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, folder))
    splits = {}
    for site, count in photos.items():
        tiles = []
        for i in range(count):
            scene = render_scene(seed, site, i, photo_size, object_size)
            image, boxes = scene["image"], scene["boxes"]
            photo_id = f"{site}_p{i:02d}"
            whole = [
                {"name": CLASS_NAME, "box": tuple(b), "truncated": False, "difficult": False} for b in boxes
            ]
            _write(root, photo_id, image, whole)
            splits.setdefault(f"photos_{site}", []).append(photo_id)
            height, width = image.shape[:2]
            for ty in range(height // tile):
                for tx in range(width // tile):
                    y0, x0 = ty * tile, tx * tile
                    tile_id = f"{photo_id}_y{ty:02d}x{tx:02d}"
                    _write(
                        root,
                        tile_id,
                        image[y0 : y0 + tile, x0 : x0 + tile],
                        tile_objects(boxes, scene["masks"], y0, x0, tile),
                    )
                    tiles.append(tile_id)
        if site == "A":
            order = np.random.default_rng([seed, 99]).permutation(len(tiles))
            num_val = max(1, int(round(VAL_FRACTION * len(tiles))))
            splits["val"] = sorted(tiles[k] for k in order[:num_val])
            splits["train"] = sorted(tiles[k] for k in order[num_val:])
        else:
            splits["test" if site == "B" else f"test_{site}"] = tiles
    for split, ids in splits.items():
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    first = photos.get("B", 0)
    for i in range(first, first + unlabelled):
        os.makedirs(os.path.join(root, UNLABELLED), exist_ok=True)
        image = render_scene(seed, "B", i, photo_size, object_size)["image"]
        Image.fromarray(image).save(os.path.join(root, UNLABELLED, f"B_p{i:02d}.jpg"), quality=90)
    return splits


def describe(root):
    """Per split: images, objects (difficult), median object side, objects per image."""
    from rfcn_tf.data.voc_folder import read_voc_folder

    lines = []
    for name in sorted(os.listdir(os.path.join(root, "ImageSets", "Main"))):
        records, _ = read_voc_folder(root, name[:-4])
        sides = np.concatenate([np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)) for b in records.boxes])
        difficult = sum(int(d.sum()) for d in records.difficult)
        lines.append(
            f"{name[:-4]:>9}: {len(records):4d} images, {len(sides):6d} objects ({difficult} difficult), "
            f"median side {np.median(sides):.0f} px, {len(sides) / len(records):.0f} per image"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- train + evaluate


def photo_scores(root, split, detections_json):
    """``rfcn-tf predict``'s detections.json on a split's photos → ``(AP (VOC07), recall)`` at
    IoU 0.5 over the non-difficult objects (every detection it holds counts for recall)."""
    from rfcn_tf.data.voc_folder import read_voc_folder
    from rfcn_tf.evaluation.voc import ap_11_point, match, precision_recall

    records, _ = read_voc_folder(root, split)
    with open(detections_json) as f:
        found = {os.path.abspath(r["file"]): r.get("detections", []) for r in json.load(f)}
    dets = {"boxes": [], "scores": [], "image": []}
    for i, path in enumerate(records.paths):
        for d in found[os.path.abspath(path)]:
            dets["boxes"].append(d["box"])
            dets["scores"].append(d["score"])
            dets["image"].append(i)
    dets = {
        "boxes": np.array(dets["boxes"], np.float64).reshape(-1, 4),
        "scores": np.array(dets["scores"]),
        "image": np.array(dets["image"], np.int64),
    }
    gts = {
        "boxes": np.concatenate(records.boxes).astype(np.float64),
        "difficult": np.concatenate(records.difficult),
        "image": np.repeat(np.arange(len(records)), [len(b) for b in records.boxes]),
    }
    positives = int((~gts["difficult"]).sum())
    tp, fp = match(dets, gts, 0.5)
    return ap_11_point(*precision_recall(tp, fp, positives)), float(tp.sum()) / positives


def _evaluate_map(cli, model, root, split, out_json, env, extra=()):
    code, _ = _stream(
        [
            cli,
            "evaluate",
            "--model",
            model,
            "--dataset",
            root,
            "--split",
            split,
            "--output",
            out_json,
            *extra,
        ],
        env,
    )
    if code != 0 or not os.path.isfile(out_json):
        return None
    with open(out_json) as f:
        return json.load(f)["mAP"]


def run_one(root, cli, variant, flags, seed, size, epochs, decoding, tile_args, env):
    """Train once on site A with extra train ``flags`` and measure → dict of figures (absent
    where a step failed)."""
    out = os.path.join(root, "runs", f"{variant.replace(' ', '_')}_seed{seed}")
    shutil.rmtree(out, ignore_errors=True)  # never resume an older run
    # val_mAP once, after the last epoch: the final model's, from the training's own output.
    model_flags = [] if "--backbone" in flags else ["--small"]  # a ResNet row drops --small
    train = [
        cli,
        "train",
        *model_flags,
        "--dataset",
        root,
        "--split",
        "train",
        "--val-split",
        "val",
        "--eval-every",
        str(epochs),
        "--min-side",
        str(size),
        "--max-side",
        str(size),
        "--batch-size",
        "4",
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--output-dir",
        out,
    ]
    start = time.monotonic()
    code, output = _stream([*train, *flags], env)
    result = {"variant": variant, "seed": seed, "train_min": (time.monotonic() - start) / 60}
    model = os.path.join(out, "final.keras")
    if code != 0 or not os.path.isfile(model):
        return result
    result["val_mAP"] = parse_val_map(output).get(epochs)
    result["test_mAP"] = _evaluate_map(cli, model, root, "test", os.path.join(out, "test.json"), env)
    if os.path.isfile(os.path.join(root, "ImageSets", "Main", "test_C.txt")):
        test_c = os.path.join(out, "test_C.json")
        result["test_C_mAP"] = _evaluate_map(cli, model, root, "test_C", test_c, env)
    if os.path.isdir(os.path.join(root, UNLABELLED)):
        adapted = os.path.join(out, "adapted.keras")
        adapt = [cli, "adapt", "--model", model, os.path.join(root, UNLABELLED), "--tile", str(size)]
        code, _ = _stream([*adapt, "--output", adapted], env)
        if code == 0:
            for split in ("test", "val"):
                result[f"adapted_{split}_mAP"] = _evaluate_map(
                    cli, adapted, root, split, os.path.join(out, f"adapted_{split}.json"), env
                )
    photos = os.path.join(root, "JPEGImages")
    with open(os.path.join(root, "ImageSets", "Main", "photos_B.txt")) as f:
        files = [os.path.join(photos, line.strip() + ".jpg") for line in f if line.strip()]
    for name, extra in (("whole", decoding), ("tiled", [*decoding, *tile_args])):
        pred_dir = os.path.join(out, f"photos_B_{name}")
        code, _ = _stream(
            [
                cli,
                "predict",
                "--model",
                model,
                *files,
                "--output-dir",
                pred_dir,
                "--score-threshold",
                "0.05",
                *extra,
            ],
            env,
        )
        if code == 0:
            result[f"{name}_AP"], result[f"{name}_recall"] = photo_scores(
                root, "photos_B", os.path.join(pred_dir, "detections.json")
            )
    return result


COLUMNS = (
    "val_mAP",
    "test_mAP",
    "gap",
    "test_C_mAP",
    "adapted_test_mAP",
    "adapted_val_mAP",
    "whole_AP",
    "whole_recall",
    "tiled_AP",
    "tiled_recall",
    "train_min",
)


def format_table(results):
    """One row per variant (--augment preset or --variant): each figure as min–max over seeds."""
    rows = [("variant", "seeds") + COLUMNS]
    for variant in dict.fromkeys(r["variant"] for r in results):
        group = [
            dict(
                r,
                gap=(r["val_mAP"] - r["test_mAP"])
                if r.get("val_mAP") is not None and r.get("test_mAP") is not None
                else None,
            )
            for r in results
            if r["variant"] == variant
        ]
        cells = [variant, ",".join(str(r["seed"]) for r in group)]
        for column in COLUMNS:
            values = [r[column] for r in group if r.get(column) is not None]
            digits = 1 if column == "train_min" else 3
            cells.append(
                "-"
                if not values
                else f"{min(values):.{digits}f}"
                if min(values) == max(values)
                else f"{min(values):.{digits}f}–{max(values):.{digits}f}"
            )
        rows.append(tuple(cells))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


CPU = dict(photo_size=(1000, 1400), tile=256, photos={"A": 4, "B": 2, "C": 2}, epochs=8)
FULL = dict(photo_size=(2000, 4000), tile=400, photos={"A": 4, "B": 3, "C": 3}, epochs=20)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--make", metavar="DIR", help="write the VOC folder here (replacing one it wrote before)"
    )
    parser.add_argument("--run", metavar="DIR", help="train and evaluate on the folder here")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help=f"the CPU-sized experiment: photos {CPU['photo_size']} px, tiles "
        f"{CPU['tile']}, {CPU['epochs']} epochs (default: photos "
        f"{FULL['photo_size']}, tiles {FULL['tile']}, {FULL['epochs']} epochs)",
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--photo-size", type=int, nargs=2, metavar=("MIN", "MAX"), default=None)
    parser.add_argument("--object-size", type=int, nargs=2, metavar=("MIN", "MAX"), default=(10, 60))
    parser.add_argument(
        "--tile", type=int, default=None, help="tile side of the splits and the model's scale"
    )
    for site in SITE_KEYS:
        parser.add_argument(f"--photos-{site.lower()}", type=int, default=None, help=f"photos of site {site}")
    parser.add_argument(
        "--unlabelled-b",
        type=int,
        default=4,
        metavar="N",
        help=f"further site-B photos without labels in {UNLABELLED}/ (default 4); --run adapts "
        "each model to them (rfcn-tf adapt) and evaluates it on the test tiles again",
    )
    parser.add_argument(
        "--augments",
        nargs="*",
        default=["default", "standard", "overhead"],
        help="rfcn-tf train --augment presets, one row each ('default': the flag "
        "omitted; default: default standard overhead)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME=FLAGS'",
        help="a further row: rfcn-tf train with these extra flags, e.g. "
        "'auto anchors=--anchors auto' (repeatable; flags naming --backbone "
        "replace --small)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--overlap", type=float, default=0.2, help="--overlap of the tiled predictions")
    parser.add_argument(
        "--max-detections",
        type=int,
        default=2000,
        help="rfcn-tf predict --max-detections on the photos, whole and tiled "
        "(dense scenes; 0: leave the flag out, the model's cap of 100)",
    )
    parser.add_argument("--train-args", default="", help="extra rfcn-tf train flags for every row (they win)")
    args = parser.parse_args(argv)
    preset = CPU if args.cpu else FULL
    tile = args.tile or preset["tile"]
    if not args.make and not args.run:
        parser.error("nothing to do: give --make DIR and/or --run DIR")

    if args.make:
        photos = {s: getattr(args, f"photos_{s.lower()}") or preset["photos"][s] for s in SITE_KEYS}
        start = time.monotonic()
        make_sites(
            args.make,
            photos,
            tile,
            tuple(args.photo_size or preset["photo_size"]),
            tuple(args.object_size),
            args.seed,
            args.unlabelled_b,
        )
        print(f"wrote {args.make} in {time.monotonic() - start:.0f} s")
        print(describe(args.make), flush=True)
    if not args.run:
        return 0
    root = os.path.abspath(args.run)
    cli = os.path.join(os.path.dirname(sys.executable), "rfcn-tf")
    if not os.path.isfile(cli):
        parser.error(f"no rfcn-tf executable next to {sys.executable} (expected {cli})")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    decoding = ["--max-detections", str(args.max_detections)] if args.max_detections else []
    tile_args = ["--tile", str(tile), "--overlap", str(args.overlap)]
    variants = [(a, [] if a == "default" else ["--augment", a]) for a in args.augments]
    for text in args.variant:
        name, sep, flags = text.partition("=")
        if not sep or not name.strip():
            parser.error(f"--variant {text!r}: expected 'NAME=FLAGS'")
        variants.append((name.strip(), shlex.split(flags)))
    results = []
    for name, flags in variants:
        for seed in args.seeds:
            results.append(
                run_one(
                    root,
                    cli,
                    name,
                    [*flags, *shlex.split(args.train_args)],
                    seed,
                    tile,
                    args.epochs or preset["epochs"],
                    decoding,
                    tile_args,
                    env,
                )
            )
            print("\n" + format_table(results), flush=True)
    with open(os.path.join(root, "runs", "summary.json"), "w") as f:
        json.dump({"tile": tile, "results": results}, f, indent=2)
    print(
        f"\n{root}: trained on site A tiles at {tile} px; val = site A tiles, test = site B "
        f"tiles; whole/tiled = site B photos (AP, recall at IoU 0.5)"
    )
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
