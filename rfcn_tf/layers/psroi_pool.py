"""Position-sensitive RoI pooling (R-FCN) built on bilinear crops (``layers.sampling``)."""

import math
import numbers

import keras
from keras import ops

from rfcn_tf.layers.sampling import check_implementation, crop_and_resize
from rfcn_tf.ops import on_tensorflow

_MODES = ("align", "crop")
_CROP_DTYPES = ("float16", "float32", "float64")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"PSRoIPool: `{name}` must be an integer >= 1, got {value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="rfcn_tf")
class PSRoIPool(keras.layers.Layer):
    """Position-sensitive RoI pooling: the k×k per-bin values of every RoI.

    ``call(score_maps, rois)``:

    - ``score_maps``: float ``[B, H, W, k²·D]`` (D = number of outputs per bin, e.g.
      C+1 classes or 4 box offsets).
    - ``rois``: float ``[B, R, 4]``, absolute image-pixel ``[ymin, xmin, ymax, xmax]``;
      ``spatial_scale`` maps image pixels to score-map pixels (1/16 for stride 16).
    - returns ``[B, R, k, k, D]``: bin (i, j) of output d. R-FCN votes by averaging
      over the two k axes.

    **Channel layout: bin-major.** Input channel ``(i·k + j)·D + d`` feeds bin row i,
    bin column j, output d: the k² channel groups are contiguous, each of D channels
    (as in the TF Object Detection API). Caffe, MXNet and torchvision use class-major
    ``(d·k + i)·k + j``; to use maps (or the 1×1 conv kernel's output axis) laid out
    that way, reshape the channel axis to ``[D, k, k]``, transpose it to ``[k, k, D]``
    and flatten back.

    **Modes** (n = ``samples_per_bin``, per axis):

    - ``"align"``: exactly torchvision ``ps_roi_align(..., output_size=k,
      spatial_scale, sampling_ratio=n)`` (aligned). With ``start = y1·scale − 0.5``
      and ``bin = (y2 − y1)·scale / k``, bin i samples ``start + i·bin +
      (s + 0.5)·bin/n`` for s = 0..n−1; bilinear; a sample with y < −1 or y > H
      (x likewise with W) counts as 0, otherwise it is clamped into [0, H−1]; the bin
      is the mean of its n×n samples.
    - ``"crop"``: the TF Object Detection API's ``position_sensitive_crop_regions``.
      The RoI is normalised to the map, ``y·scale / H``, cut into k×k equal bins,
      each bin resampled by ``crop_and_resize`` to n×n points (first and last on the
      bin edges, pixel ``y_n·(H − 1)``; the centre when n = 1), 0 outside
      [0, H − 1], and averaged.

    A zero-area RoI samples a single point for every bin (``(y1·scale − 0.5,
    x1·scale − 0.5)`` in align mode); an inverted RoI (ymax < ymin) gives what
    torchvision gives for a negative width (bins laid out backwards from the start
    corner). R = 0 gives ``[B, 0, k, k, D]``. RoIs are kept in float32 (the layer does
    not autocast its inputs; the output has the layer's compute dtype).

    ``implementation``: ``"crop_and_resize"`` (default; TensorFlow's kernel, the faster on
    CPU) or ``"gather"`` (the same values from GATHER and arithmetic, for TFLite built-ins
    and ONNX; see ``layers.sampling``). Under JAX and PyTorch both run the gathers.

    Shapes unknown when the graph is built, and NaN or Inf RoIs, are asserted at run time
    under TensorFlow only (JAX and PyTorch know every shape when they trace).

    Gradients flow to ``score_maps`` only: the RoI coordinates are treated as
    constants (the paper's approximate joint training).
    """

    def __init__(
        self,
        k=7,
        spatial_scale=1.0 / 16,
        samples_per_bin=2,
        mode="align",
        implementation="crop_and_resize",
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.k = _positive_int(k, "k")
        self.samples_per_bin = _positive_int(samples_per_bin, "samples_per_bin")
        if mode not in _MODES:
            raise ValueError(f"PSRoIPool: `mode` must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        check_implementation(implementation, "PSRoIPool")
        self.implementation = implementation
        if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
            raise ValueError(f"PSRoIPool: `spatial_scale` must be a positive number, got {spatial_scale!r}")
        if not (math.isfinite(spatial_scale) and spatial_scale > 0):
            raise ValueError(f"PSRoIPool: `spatial_scale` must be a positive number, got {spatial_scale!r}")
        self.spatial_scale = float(spatial_scale)

    def get_config(self):
        config = super().get_config()
        config.update(
            k=self.k,
            spatial_scale=self.spatial_scale,
            samples_per_bin=self.samples_per_bin,
            mode=self.mode,
            implementation=self.implementation,
        )
        return config

    def _check_shapes(self, score_maps_shape, rois_shape):
        """Static shape checks; returns D (or None when the channels are unknown)."""
        score_maps_shape, rois_shape = _static(score_maps_shape), _static(rois_shape)
        if score_maps_shape is None or len(score_maps_shape) != 4:
            raise ValueError(
                f"PSRoIPool: `score_maps` must have rank 4 [B, H, W, k*k*D], got shape {score_maps_shape}"
            )
        if rois_shape is None or len(rois_shape) != 3 or rois_shape[-1] not in (None, 4):
            raise ValueError(f"PSRoIPool: `rois` must have shape [B, R, 4], got {rois_shape}")
        batch_maps, batch_rois = score_maps_shape[0], rois_shape[0]
        if batch_maps is not None and batch_rois is not None and batch_maps != batch_rois:
            raise ValueError(
                f"PSRoIPool: batch size of `rois` ({batch_rois}) does not match `score_maps` ({batch_maps})"
            )
        channels = score_maps_shape[-1]
        if channels is None:
            return None
        if channels % (self.k * self.k):
            raise ValueError(
                f"PSRoIPool: `score_maps` channels ({channels}) must be divisible by k*k = {self.k * self.k}"
            )
        return channels // (self.k * self.k)

    def compute_output_shape(self, score_maps_shape, rois_shape):
        depth = self._check_shapes(score_maps_shape, rois_shape)
        batch = score_maps_shape[0] if score_maps_shape[0] is not None else rois_shape[0]
        return (batch, rois_shape[1], self.k, self.k, depth)

    def call(self, score_maps, rois):
        score_maps = ops.convert_to_tensor(score_maps)
        rois = ops.convert_to_tensor(rois)
        static_depth = self._check_shapes(score_maps.shape, rois.shape)
        k, n = self.k, self.samples_per_bin
        k2 = k * k
        if on_tensorflow():
            score_maps, rois = _assert_in_graph(score_maps, rois, k2)
        rois = ops.stop_gradient(ops.cast(rois, "float32"))

        batch, height, width, channels = ops.shape(score_maps)
        num_rois = ops.shape(rois)[1]
        depth = static_depth if static_depth is not None else channels // k2

        # Each bin's D-channel group becomes its own image: [B*k², H, W, D].
        dtype = keras.backend.standardize_dtype(score_maps.dtype)
        maps = score_maps if dtype in _CROP_DTYPES else ops.cast(score_maps, "float32")
        maps = ops.reshape(maps, (batch, height, width, k2, depth))
        maps = ops.transpose(maps, (0, 3, 1, 2, 4))
        maps = ops.reshape(maps, (batch * k2, height, width, depth))

        y1, x1, y2, x2 = (rois[..., i] for i in range(4))  # each [B, R]
        h = ops.cast(height, "float32")
        w = ops.cast(width, "float32")
        if self.mode == "crop":
            first_y, last_y = self._crop_axis(y1, y2, h)
            first_x, last_x = self._crop_axis(x1, x2, w)
        elif n <= 2:
            # Every sample is a crop corner (n = 2) or the crop's centre (n = 1), so
            # torchvision's border rule goes into the coordinates themselves and the maps
            # are read as they are. A map one pixel high (or wide) gets a zero row (or
            # column): crop_and_resize cannot place a sample outside a one-pixel axis.
            pad_h, pad_w = _below_two(height), _below_two(width)
            maps = ops.pad(maps, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
            first_y, last_y = self._align_samples(y1, y2, h, h + ops.cast(pad_h, "float32"))
            first_x, last_x = self._align_samples(x1, x2, w, w + ops.cast(pad_w, "float32"))
        else:
            # Interior samples are interpolated between the corners, so the rule is kept by
            # replicating one row/column on each side: crop_and_resize then reads the edge
            # value for samples in [-1, 0) and (H-1, H], and 0 beyond.
            maps = ops.pad(maps, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
            first_y, last_y = self._align_axis(y1, y2, h)
            first_x, last_x = self._align_axis(x1, x2, w)

        grid = (batch, num_rois, k, k)
        boxes = ops.stack(
            [
                ops.broadcast_to(first_y[..., :, None], grid),
                ops.broadcast_to(first_x[..., None, :], grid),
                ops.broadcast_to(last_y[..., :, None], grid),
                ops.broadcast_to(last_x[..., None, :], grid),
            ],
            axis=-1,
        )
        # Box (b, r, i, j) reads image b·k² + i·k + j of the regrouped maps.
        images = ops.arange(batch, dtype="int32")[:, None, None, None] * k2
        box_indices = ops.broadcast_to(
            images + ops.reshape(ops.arange(k2, dtype="int32"), (1, 1, k, k)), grid
        )
        crops = crop_and_resize(
            maps,
            ops.reshape(boxes, (-1, 4)),
            ops.reshape(box_indices, (-1,)),
            [n, n],
            implementation=self.implementation,
        )  # [B*R*k², n, n, D]
        values = ops.mean(crops, axis=(1, 2))
        values = ops.reshape(values, (batch, num_rois, k, k, depth))
        return ops.cast(values, self.compute_dtype)

    def _align_positions(self, lo, hi):
        return align_positions(lo, hi, self.spatial_scale, self.k, self.samples_per_bin)

    def _align_samples(self, lo, hi, size, padded_size):
        """For n ≤ 2, the samples themselves as crop corners normalised to the (padded) map:
        clamped into [0, size − 1], or outside the map where they count as 0: 2×[B, R, k]."""
        at = self._align_positions(lo, hi)
        inside = ops.logical_and(at >= -1.0, at <= size)
        at = ops.where(inside, ops.clip(at, 0.0, size - 1.0) / (padded_size - 1.0), -1.0)
        return at[..., 0], at[..., -1]

    def _align_axis(self, lo, hi, size):
        """The first and last sample of each bin, normalised for the map padded by one
        row/column each side (+1; crop_and_resize scales by padded size − 1): 2×[B, R, k]."""
        at = on_padded_map(self._align_positions(lo, hi), size)
        return at[..., 0], at[..., -1]

    def _crop_axis(self, lo, hi, size):
        """Bin edges in coordinates normalised to the map extent: 2×[B, R, k]."""
        lo_n = lo * self.spatial_scale / size
        step = (hi - lo) * self.spatial_scale / (size * self.k)
        bins = ops.arange(self.k, dtype="float32")
        first = lo_n[..., None] + bins * step[..., None]
        last = lo_n[..., None] + (bins + 1.0) * step[..., None]
        return first, last


def align_positions(lo, hi, spatial_scale, k, n):
    """torchvision's aligned sample positions in map pixels, ``[..., k, n]`` (bin, sample),
    of RoI sides ``lo``, ``hi`` ``[...]`` in image pixels: bin i, sample s at ``lo·scale −
    0.5 + (i + (s + 0.5)/n)·(hi − lo)·scale/k``."""
    bin_size = (hi - lo) * (spatial_scale / k)
    start = lo * spatial_scale - 0.5
    offsets = (ops.arange(n, dtype="float32") + 0.5) / n  # within a bin, in bins
    return (
        start[..., None, None]
        + (ops.arange(k, dtype="float32")[:, None] + offsets) * bin_size[..., None, None]
    )


def on_padded_map(positions, size):
    """Positions in map pixels along an axis of ``size`` → ``crop_and_resize``'s normalised
    coordinates on the map padded by one replicated row (column) on each side, which turns
    "0 outside the map" into the align rule: the edge value within one cell, 0 beyond."""
    return (positions + 1.0) / (size + 1.0)


def _static(shape):
    """A shape (tuple, list, ``tf.TensorShape``) as a tuple of ints and None; None when
    its rank is unknown."""
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def _below_two(size):
    """1 if an axis of ``size`` (int, or a TensorFlow scalar when unknown at trace time) is
    shorter than 2, else 0 (a Python int when ``size`` is one: pad widths must be static
    under JAX)."""
    return int(size < 2) if isinstance(size, int) else ops.cast(ops.less(size, 2), "int32")


def _assert_in_graph(score_maps, rois, k2):
    """TensorFlow: the run-time checks of shapes unknown when the graph is built, and of
    finite RoIs (other backends have every shape when tracing and no graph-time asserts)."""
    import tensorflow as tf

    shape, rois_shape = tf.shape(score_maps), tf.shape(rois)
    checks = [
        tf.debugging.assert_equal(
            rois_shape[0], shape[0], message="PSRoIPool: batch size of `rois` does not match `score_maps`"
        ),
        tf.debugging.assert_equal(
            shape[3] % k2, 0, message=f"PSRoIPool: `score_maps` channels must be divisible by k*k = {k2}"
        ),
    ]
    # In a graph, make the reshapes wait for the checks so their clearer message wins.
    with tf.control_dependencies([c for c in checks if c is not None]):
        score_maps = tf.identity(score_maps)
        rois = tf.identity(rois)
    rois = tf.debugging.assert_all_finite(tf.cast(rois, tf.float32), "PSRoIPool: `rois` contains NaN or Inf")
    return score_maps, rois
