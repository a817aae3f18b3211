"""What a phone photo costs: a 6000×4000 JPEG vs its 600×900 copy, in ms.

The model resizes every image to its own scale, and ``rfcn-tf predict`` / ``serving_bytes``
decode a large JPEG at 1/2, 1/4 or 1/8 of its size (never below that scale), so a photo
should cost about what its downscaled copy does. Random weights, ``--backbone`` model (the
small one by default, at its 192 px scale; ``resnet101`` at 600 px), one image per call;
warm-up, then ``--repeats`` rounds that run each case once in turn; medians:

- predict: ``model.predict_on_batch`` on the decoded uint8 array (decode not included);
- files:   ``rfcn_tf.predict.predict_files`` on the JPEG file: decode, detect, JSON, PNG;
- bytes:   the SavedModel's ``serving_bytes`` signature on the JPEG bytes;

and what batch independence costs: four images of different sizes (a padded batch, run
image by image inside the model) against four of one size (one batched pass), at the
model's own scale so that no resizing is involved.

    python benchmarks/bench_scale.py --repeats 5
    python benchmarks/bench_scale.py --backbone resnet101 --repeats 3
"""

import argparse
import os
import statistics
import tempfile

import numpy as np
import tensorflow as tf
from timing import environment, interleaved_times

import rfcn_tf
from rfcn_tf.predict import predict_files


def photo(height, width, seed=0):
    """A smooth random picture (so the JPEG is photo-like in size), uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (height // 50 + 2, width // 50 + 2, 3)).astype(np.float32)
    image = tf.image.resize(coarse[None], [height, width], method="bicubic")[0]
    return np.clip(image.numpy() + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small", choices=("small", "resnet50", "resnet101"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)

    config = (
        rfcn_tf.RFCNConfig.small(num_classes=5)
        if args.backbone == "small"
        else rfcn_tf.RFCNConfig(num_classes=20, backbone=args.backbone)
    )
    model = rfcn_tf.RFCN(config=config)
    work = tempfile.mkdtemp(prefix="bench_scale_")
    export = rfcn_tf.export_saved_model(model, os.path.join(work, "saved"))
    serving_bytes = tf.saved_model.load(export).signatures["serving_bytes"]

    big = photo(4000, 6000)
    small = tf.image.resize(big, [600, 900], antialias=True).numpy().round().astype(np.uint8)
    calls = {}
    for name, image in (("6000x4000", big), ("900x600", small)):
        path = os.path.join(work, f"{name}.jpg")
        data = tf.io.encode_jpeg(image, quality=90).numpy()
        with open(path, "wb") as f:
            f.write(data)
        calls[f"predict {name}"] = (model.predict_on_batch, (image[None],))
        calls[f"files {name}"] = (predict_files, (model, [path], os.path.join(work, name)))
        calls[f"bytes {name}"] = (lambda d=data: serving_bytes(encoded_images=tf.constant([d])), ())
        print(f"{name}: JPEG {len(data) / 1e6:.1f} MB")

    side = config.min_side if isinstance(config.min_side, int) else max(config.min_side)
    rng = np.random.default_rng(1)
    mixed = [rng.integers(0, 256, (side, side + extra, 3), dtype=np.uint8) for extra in (0, 16, 32, 48)]
    padded = rfcn_tf.pack_images(mixed)
    same = np.stack([mixed[0]] * 4)
    calls["padded batch of 4"] = (model.predict_on_batch, (padded,))
    calls["plain batch of 4"] = (model.predict_on_batch, (same,))

    print(
        f"{args.backbone} at min_side {config.min_side}, max_side {config.max_side}; median of "
        f"{args.repeats} after {args.warmup} warm-up  {environment()}"
    )
    times = interleaved_times(calls, args.repeats, args.warmup)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for kind in ("predict", "files", "bytes"):
        big_ms, small_ms = medians[f"{kind} 6000x4000"], medians[f"{kind} 900x600"]
        print(
            f"{kind:<8} 6000x4000 {big_ms:>8.0f} ms   900x600 {small_ms:>8.0f} ms   "
            f"ratio {big_ms / small_ms:.2f}"
        )
    padded_ms, plain_ms = medians["padded batch of 4"], medians["plain batch of 4"]
    print(
        f"4 images of {side}x{side}..{side + 48}: padded (image by image) {padded_ms:.0f} ms, "
        f"4 of one size (batched) {plain_ms:.0f} ms; ratio {padded_ms / plain_ms:.2f}"
    )


if __name__ == "__main__":
    main()
