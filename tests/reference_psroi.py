"""Plain-numpy, loop-based references for position-sensitive RoI pooling (no TF).

Maps are ``[B, H, W, k²·D]``; RoIs ``[B, R, 4]`` absolute-pixel yxyx; results
``[B, R, k, k, D]``. ``layout`` names the channel order of the maps:
``"bin_major"`` (channel ``(i·k + j)·D + d``) or ``"class_major"``
(channel ``(d·k + i)·k + j``, torchvision/Caffe). Everything is float64.

Each pooled bin is the mean of n×n samples; a sample is a list of (row, col, weight)
taps into one channel group. Forward sums taps; the adjoint scatters them.
"""

import math

import numpy as np


def channel_index(i, j, d, k, depth, layout):
    """Input channel feeding bin (i, j), output d."""
    if layout == "bin_major":
        return (i * k + j) * depth + d
    if layout == "class_major":
        return (d * k + i) * k + j
    raise ValueError(f"unknown layout {layout!r}")


def taps_torchvision(y, x, height, width):
    """torchvision's bilinear_interpolate: 0 outside [-1, H] × [-1, W], else clamped."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return []
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return [
        (y_low, x_low, hy * hx),
        (y_low, x_high, hy * lx),
        (y_high, x_low, ly * hx),
        (y_high, x_high, ly * lx),
    ]


def taps_crop_and_resize(y, x, height, width):
    """tf.image.crop_and_resize's bilinear read at pixel (y, x): 0 outside [0, H-1]."""
    if y < 0 or y > height - 1 or x < 0 or x > width - 1:
        return []
    top, bottom = int(math.floor(y)), int(math.ceil(y))
    left, right = int(math.floor(x)), int(math.ceil(x))
    ly, lx = y - top, x - left
    return [
        (top, left, (1 - ly) * (1 - lx)),
        (top, right, (1 - ly) * lx),
        (bottom, left, ly * (1 - lx)),
        (bottom, right, ly * lx),
    ]


def align_points(lo, hi, bin_index, k, spatial_scale, n):
    """torchvision ps_roi_align sample coordinates along one axis for one bin."""
    start = lo * spatial_scale - 0.5
    bin_size = (hi - lo) * spatial_scale / k
    return [start + bin_index * bin_size + (s + 0.5) * bin_size / n for s in range(n)]


def crop_points(lo, hi, bin_index, k, spatial_scale, n, size):
    """crop_and_resize sample pixels along one axis for bin ``bin_index`` of a RoI
    normalised to the map extent (TF OD API position_sensitive_crop_regions)."""
    lo_n = lo * spatial_scale / size
    hi_n = hi * spatial_scale / size
    step = (hi_n - lo_n) / k
    first = lo_n + bin_index * step
    last = lo_n + (bin_index + 1) * step
    if n == 1:
        return [0.5 * (first + last) * (size - 1)]
    return [first * (size - 1) + s * (last - first) * (size - 1) / (n - 1) for s in range(n)]


def _bin_samples(mode, roi, i, j, k, spatial_scale, n, height, width):
    """All n×n sample tap lists of bin (i, j)."""
    y1, x1, y2, x2 = roi
    if mode == "align":
        ys = align_points(y1, y2, i, k, spatial_scale, n)
        xs = align_points(x1, x2, j, k, spatial_scale, n)
        taps = taps_torchvision
    elif mode == "crop":
        ys = crop_points(y1, y2, i, k, spatial_scale, n, height)
        xs = crop_points(x1, x2, j, k, spatial_scale, n, width)
        taps = taps_crop_and_resize
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return [taps(y, x, height, width) for y in ys for x in xs]


def psroi_pool(maps, rois, k, spatial_scale, n, mode, layout="bin_major"):
    """Forward: maps [B, H, W, k²D], rois [B, R, 4] → [B, R, k, k, D]."""
    maps = np.asarray(maps, np.float64)
    rois = np.asarray(rois, np.float64)
    batch, height, width, channels = maps.shape
    depth = channels // (k * k)
    out = np.zeros((batch, rois.shape[1], k, k, depth))
    for b in range(batch):
        for r in range(rois.shape[1]):
            for i in range(k):
                for j in range(k):
                    samples = _bin_samples(mode, rois[b, r], i, j, k, spatial_scale, n, height, width)
                    for d in range(depth):
                        c = channel_index(i, j, d, k, depth, layout)
                        total = 0.0
                        for taps in samples:
                            for row, col, weight in taps:
                                total += weight * maps[b, row, col, c]
                        out[b, r, i, j, d] = total / len(samples)
    return out


def psroi_pool_adjoint(maps_shape, rois, grad_out, k, spatial_scale, n, mode, layout="bin_major"):
    """Gradient of ``sum(psroi_pool(maps) * grad_out)`` w.r.t. maps: [B, H, W, k²D]."""
    rois = np.asarray(rois, np.float64)
    grad_out = np.asarray(grad_out, np.float64)
    batch, height, width, channels = maps_shape
    depth = channels // (k * k)
    grad = np.zeros(maps_shape)
    for b in range(batch):
        for r in range(rois.shape[1]):
            for i in range(k):
                for j in range(k):
                    samples = _bin_samples(mode, rois[b, r], i, j, k, spatial_scale, n, height, width)
                    for d in range(depth):
                        c = channel_index(i, j, d, k, depth, layout)
                        g = grad_out[b, r, i, j, d] / len(samples)
                        for taps in samples:
                            for row, col, weight in taps:
                                grad[b, row, col, c] += weight * g
    return grad


def class_major_to_bin_major(maps, k):
    """Permute the channel axis [..., (d·k + i)·k + j] → [..., (i·k + j)·D + d]."""
    maps = np.asarray(maps)
    depth = maps.shape[-1] // (k * k)
    lead = maps.shape[:-1]
    grouped = maps.reshape(lead + (depth, k, k))
    return np.moveaxis(grouped, -3, -1).reshape(lead + (k * k * depth,))


def roi_kinds(rng, height, width, scale, batch):
    """One RoI of every kind per image, different per image: [B, 12, 4] float32.

    Image extent is (height/scale, width/scale) pixels.
    """
    ih, iw = height / scale, width / scale

    def box(y1, x1, h, w):
        return [y1, x1, y1 + h, x1 + w]

    def u(lo, hi):
        return rng.uniform(lo, hi)

    per_image = []
    for _ in range(batch):
        per_image.append(
            [
                # inside
                box(u(0, 0.4 * ih), u(0, 0.4 * iw), u(0.3, 0.6) * ih, u(0.3, 0.6) * iw),
                box(u(0, 0.2 * ih), u(0, 0.2 * iw), u(0.6, 0.8) * ih, u(0.6, 0.8) * iw),
                # crossing the top-left / bottom-right border
                box(u(-0.3, 0) * ih, u(-0.3, 0) * iw, u(0.5, 0.9) * ih, u(0.5, 0.9) * iw),
                box(u(0.5, 0.8) * ih, u(0.5, 0.8) * iw, u(0.4, 0.7) * ih, u(0.4, 0.7) * iw),
                # reaching far beyond -1 and H/W (samples there count as 0 in align mode)
                box(u(-1.0, -0.6) * ih, u(-1.0, -0.6) * iw, u(2.0, 2.5) * ih, u(2.0, 2.5) * iw),
                box(u(0.2, 0.5) * ih, u(-0.9, -0.5) * iw, u(0.3, 1.2) * ih, u(0.7, 1.8) * iw),
                # entirely outside
                box(u(1.3, 1.5) * ih, u(0, 0.5) * iw, u(0.1, 0.3) * ih, u(0.1, 0.3) * iw),
                # tiny (under a map pixel)
                box(u(0, 0.9) * ih, u(0, 0.9) * iw, u(0.05, 0.9) / scale, u(0.05, 0.9) / scale),
                # zero-area, and zero height only
                box(u(0, 0.9) * ih, u(0, 0.9) * iw, 0.0, 0.0),
                box(u(0, 0.9) * ih, u(0, 0.5) * iw, 0.0, u(0.2, 0.5) * iw),
                # inverted (ymax < ymin, xmax < xmin)
                box(u(0.5, 0.9) * ih, u(0.5, 0.9) * iw, -u(0.2, 0.4) * ih, -u(0.2, 0.4) * iw),
                # arbitrary
                box(u(-0.2, 1.0) * ih, u(-0.2, 1.0) * iw, u(0, 1.0) * ih, u(0, 1.0) * iw),
            ]
        )
    return np.asarray(per_image, np.float32)
