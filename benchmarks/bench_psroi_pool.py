"""PSRoIPool speed at the paper's shapes: forward and forward+backward, in ms.

Score maps 1×38×63×(7²·21) (a 600×1000 image at stride 16, VOC's 21 classes), k = 7,
random plausible RoIs, both modes, 300 / 1000 / 2000 RoIs, both implementations
(`crop_and_resize`, the default, and `gather`, the TFLite/ONNX formulation); `tf.function`,
warm-up, then the median of `--repeats` runs.

    python benchmarks/bench_psroi_pool.py --repeats 10
"""

import argparse

import numpy as np
import tensorflow as tf
from timing import environment, median_ms, pooled_gradient, random_rois

from rfcn_tf.layers.psroi_pool import PSRoIPool
from rfcn_tf.layers.sampling import IMPLEMENTATIONS

IMAGE_HEIGHT, IMAGE_WIDTH = 600, 1000
STRIDE = 16
K = 7
CLASSES = 21


def bench(mode, num_rois, repeats, samples_per_bin, rng, implementation="crop_and_resize"):
    """Median (forward ms, forward+backward ms) for one configuration."""
    layer = PSRoIPool(
        k=K,
        spatial_scale=1.0 / STRIDE,
        samples_per_bin=samples_per_bin,
        mode=mode,
        implementation=implementation,
    )
    height = -(-IMAGE_HEIGHT // STRIDE)
    width = -(-IMAGE_WIDTH // STRIDE)
    maps = tf.constant(rng.normal(size=(1, height, width, K * K * CLASSES)), tf.float32)
    rois = tf.constant(random_rois(rng, num_rois, IMAGE_HEIGHT, IMAGE_WIDTH))
    weights = tf.constant(rng.normal(size=(1, num_rois, K, K, CLASSES)), tf.float32)

    forward = tf.function(layer)

    forward_backward = pooled_gradient(layer, weights)
    return (
        median_ms(forward, (maps, rois), repeats),
        median_ms(forward_backward, (maps, rois), repeats),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median)")
    parser.add_argument("--rois", type=int, nargs="+", default=[300, 1000, 2000])
    parser.add_argument("--modes", nargs="+", default=["align", "crop"], choices=["align", "crop"])
    parser.add_argument("--samples-per-bin", type=int, default=2)
    parser.add_argument(
        "--implementations", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    rng = np.random.default_rng(0)
    print(
        f"PSRoIPool  maps 1x38x63x{K * K * CLASSES}  k={K}  n={args.samples_per_bin}  "
        f"median of {args.repeats}  {environment()}"
    )
    print(f"{'mode':<6} {'implementation':<16} {'RoIs':>5} {'forward ms':>11} {'fwd+bwd ms':>11}")
    for mode in args.modes:
        for implementation in args.implementations:
            for num_rois in args.rois:
                fwd, fwd_bwd = bench(mode, num_rois, args.repeats, args.samples_per_bin, rng, implementation)
                print(f"{mode:<6} {implementation:<16} {num_rois:>5} {fwd:>11.2f} {fwd_bwd:>11.2f}")


if __name__ == "__main__":
    main()
