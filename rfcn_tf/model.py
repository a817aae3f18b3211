"""The R-FCN model: a functional ``keras.Model`` that trains with ``fit`` and detects with
``predict``.

The graph, built in ``__init__`` from ``keras.Input``s and layers, top to bottom:

    images (+ image_sizes) → resize to the model's scale → preprocess (ResNet convention)
      → trunk: conv1..conv4 (a keras.applications ResNet; stride 16, or 8 for "small")
      → RPN: 3×3 conv → objectness + deltas → anchors → proposals (clip, top-N, NMS)  [B, P, 4]
      → conv5 (dilated) → 1×1 conv → k²(C+1) class maps + 4k² box maps        (once per image)
      → PSRoIPool + vote on every proposal                               (per RoI, no weights)
      → decoder: softmax, box decoding, per-class NMS, boxes back in the input's pixels

``model(images)`` and ``model.predict(images)`` return the detections dict. Training runs
the same layers up to the score maps (``_features_model``); ``compute_loss`` adds the
ground truth to the proposals, assigns targets, runs the per-RoI step on them with the
graph's own layers (``_roi_model``) and applies OHEM. ``compile(jit_compile=True)`` runs
the same graph as three views — resize + preprocess, the convolutions under XLA, the rest
— since XLA cannot take the whole step.
"""

import keras
import numpy as np
from keras import ops

from rfcn_tf import losses, targets
from rfcn_tf.backbones import build_backbone
from rfcn_tf.config import RFCNConfig
from rfcn_tf.inputs import (
    as_model_inputs,
    check_image_spec,
    check_predict_input,
    check_targets,
    detect_each_if_padded,
    unpack_targets,
)
from rfcn_tf.keras_internals import loss_tracker
from rfcn_tf.layers.detection import DetectionDecoder
from rfcn_tf.layers.heads import FasterRCNNHead, RFCNHead
from rfcn_tf.layers.proposals import ProposalLayer
from rfcn_tf.layers.rpn import AnchorGrid, flatten_rpn, rpn_head
from rfcn_tf.layers.transform import ImageResizer, Preprocess
from rfcn_tf.ops import on_tensorflow

LOSS_NAMES = ("rpn_cls_loss", "rpn_box_loss", "cls_loss", "box_loss")
# The layout of get_config(); a .keras file of another layout cannot be rebuilt.
FORMAT_VERSION = 2
_KERAS_KWARGS = ("name", "dtype", "trainable")


@keras.saving.register_keras_serializable(package="rfcn_tf")
class RFCN(keras.Model):
    """R-FCN (Dai et al., NIPS 2016), or Faster R-CNN with ``head="faster_rcnn"``.

    ``RFCN(num_classes=20, backbone="resnet101", head="rfcn", ...)`` takes any
    ``RFCNConfig`` field as a keyword, or ``RFCN(config=RFCNConfig(...), **overrides)``.

    Inputs: images ``[B, H, W, 3]`` RGB in 0..255 (uint8 or float) of any size, a list of
    ``[H, W, 3]`` images of different sizes, or ``{"images", "image_sizes": [B, 2]}`` for
    a zero-padded batch (``rfcn_tf.pack_images``). The model resizes every image to its
    own scale (``config.min_side`` / ``max_side``). Boxes in (training targets) and out
    (detections) are absolute pixels of the input images in ``config.bounding_box_format``.
    """

    def __init__(self, config=None, **kwargs):
        keras_kwargs = {k: kwargs.pop(k) for k in _KERAS_KWARGS if k in kwargs}
        if isinstance(config, dict):
            config = RFCNConfig.from_dict(config)
        config = (config or RFCNConfig()).replace(**kwargs).resolved()
        stride = config.feature_stride

        # Functional model
        images = keras.Input((None, None, 3), name="images")
        image_sizes = keras.Input((2,), dtype="int32", name="image_sizes", optional=True)
        x, sizes, scales = ImageResizer(config.min_side, config.max_side, config.portable, name="resize")(
            images, image_sizes
        )
        x = Preprocess(stride, name="preprocess")(x, sizes)
        trunk, conv5 = build_backbone(
            config.backbone,
            config.backbone_weights,
            dilated_conv5=config.head == "rfcn",
            freeze_stem=config.freeze_stem,
            freeze_batchnorm=config.freeze_batchnorm,
            output_stride=stride,
        )
        conv4 = trunk(x)

        rpn_logits, rpn_deltas = rpn_head(conv4, config.num_anchors, config.rpn_channels)
        anchors = AnchorGrid(stride, config.anchor_scales, config.anchor_ratios, name="anchors")(rpn_logits)
        proposals, _, valid = ProposalLayer(
            config.rpn_pre_nms_train,
            config.rpn_post_nms_train,
            config.rpn_pre_nms_test,
            config.rpn_post_nms_test,
            config.rpn_nms_iou,
            config.rpn_min_size,
            name="proposals",
        )(rpn_logits, rpn_deltas, anchors, sizes)

        head = _build_head(config, conv5)
        maps = head.score_maps(conv4)
        class_logits, box_deltas = head.per_roi(maps, proposals)
        detections = DetectionDecoder(
            config.box_std,
            config.nms_iou,
            config.score_threshold,
            config.max_detections,
            config.bounding_box_format,
            config.portable,
            name="detections",
        )(proposals, valid, class_logits, box_deltas, sizes, scales)

        inputs = {"images": images, "image_sizes": image_sizes}
        super().__init__(inputs=inputs, outputs=detections, **{"name": "rfcn", **keras_kwargs})
        self.config = config
        self._trunk_name, self._conv5_name = trunk.name, conv5.name
        self._map_names = head.map_names
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

        # Two views of the same layers (so untracked: they add no weights of their own):
        # everything before the per-RoI step, and the per-RoI step on any RoIs.
        raw = {
            "image_sizes": sizes,
            "scales": scales,
            "anchors": anchors,
            "rpn_logits": rpn_logits,
            "rpn_deltas": rpn_deltas,
            "proposals": proposals,
            "proposal_valid": valid,
            **maps,
        }
        map_inputs = {name: keras.Input(maps[name].shape[1:], name=name) for name in head.map_names}
        rois = keras.Input((None, 4), name="rois")
        object.__setattr__(self, "_features_model", keras.Model(inputs, raw, name="rfcn_features"))
        object.__setattr__(
            self,
            "_roi_model",
            keras.Model({**map_inputs, "rois": rois}, head.per_roi(map_inputs, rois), name="rfcn_roi_model"),
        )
        # The same graph in three pieces, for XLA (compile(jit_compile=True)) on the middle
        # one: the convolutions compile; the resize (ScaleAndTranslate), crop_and_resize and
        # the dynamic shapes of proposals, sampling and NMS stay in TensorFlow.
        convs = {"rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas, **maps}
        after = [sizes, scales, *convs.values()]  # a list: Keras names dict inputs by Input only
        object.__setattr__(self, "_conv_names", tuple(convs))  # the order of `after`
        object.__setattr__(
            self,
            "_front_model",
            keras.Model(inputs, {"x": x, "image_sizes": sizes, "scales": scales}, name="rfcn_front"),
        )
        object.__setattr__(self, "_conv_model", keras.Model(x, convs, name="rfcn_convolutions"))
        object.__setattr__(
            self,
            "_proposal_model",
            keras.Model(
                after,
                {"anchors": anchors, "proposals": proposals, "proposal_valid": valid},
                name="rfcn_proposals",
            ),
        )
        object.__setattr__(self, "_detect_model", keras.Model(after, detections, name="rfcn_detect"))
        object.__setattr__(self, "_jit_convolutions", None)  # a tf.function once compiled for XLA
        object.__setattr__(self, "_traced_step", None)  # see _sampling_step

    @property
    def features_model(self):
        """The graph before the per-RoI step (a ``keras.Model`` on the same layers):
        inputs → ``{"image_sizes", "scales", "anchors", "rpn_logits", "rpn_deltas",
        "proposals", "proposal_valid"`` and the score maps (R-FCN: ``"class_maps",
        "box_maps"``; Faster R-CNN: ``"conv4"``)``}``; what ``compute_loss`` reads."""
        return self._features_model

    @property
    def roi_model(self):
        """The per-RoI step (a ``keras.Model`` on the graph's own layers): ``{score maps…,
        "rois": [B, R, 4] pixels of the resized image}`` → ``(class logits [B, R, C+1],
        box deltas [B, R, 4])``."""
        return self._roi_model

    @property
    def trunk(self):
        """The backbone up to conv4 (a nested ``keras.Model``)."""
        return self.get_layer(self._trunk_name)

    @property
    def conv5(self):
        """The backbone's conv5 (dilated for R-FCN; a nested ``keras.Model``)."""
        return self.get_layer(self._conv5_name)

    @property
    def jit_compile_convolutions(self):
        """Whether ``compile(jit_compile=...)`` put the convolutions under XLA."""
        return self._jit_convolutions is not None

    @property
    def jit_compile(self):
        """On TensorFlow always False: Keras's whole training step cannot be XLA-compiled
        there (the resize's ScaleAndTranslate and crop_and_resize have no XLA kernels), so
        ``compile(jit_compile=True)`` (or Keras's ``"auto"`` on a GPU) compiles the
        convolutions instead — backbone, RPN and score maps, forward and backward; see
        ``jit_compile_convolutions``. On JAX the whole step is jitted (Keras's default)."""
        if not on_tensorflow():
            return keras.Model.jit_compile.fget(self)
        return False

    @jit_compile.setter
    def jit_compile(self, value):
        if not on_tensorflow():
            keras.Model.jit_compile.fset(self, value)
            return
        import tensorflow as tf

        convs = None
        if value:
            convs = tf.function(
                lambda x, training: self._conv_model(x, training=training),
                jit_compile=True,
                reduce_retracing=True,
            )
        object.__setattr__(self, "_jit_convolutions", convs)

    # ---------------------------------------------------------------- forward
    def __call__(self, inputs, *args, **kwargs):
        inputs = as_model_inputs(inputs)
        images = inputs["images"]
        if hasattr(images, "shape") and hasattr(images, "dtype"):
            check_image_spec(images.shape, images.dtype)  # before Keras's own, vaguer check
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        inputs = as_model_inputs(inputs)  # JAX's stateless calls skip __call__
        if training:
            return self._features(inputs, training=True)
        if inputs["image_sizes"] is None:
            return self._detect(inputs["images"])
        if not on_tensorflow():
            # A padded batch's resized canvas would have a data-dependent size, which JAX
            # cannot trace: the graph takes the batch as it is, at the model's scale (what
            # the data pipelines give); predict() detects other padded batches per image.
            return super().call(inputs, training=False)
        return detect_each_if_padded(
            self._detect, inputs["images"], inputs["image_sizes"], self.config.max_detections
        )

    def _features(self, inputs, training):
        """``features_model``'s outputs; with the convolutions under XLA when compiled so."""
        if self._jit_convolutions is None:
            return self._features_model(inputs, training=training)
        after, convs = self._convolutions(inputs, training)
        proposals = self._proposal_model(after, training=training)
        return {"image_sizes": after[0], "scales": after[1], **convs, **proposals}

    def _detect(self, images):
        """Detections of an unpadded batch ``[B, H, W, 3]``."""
        inputs = {"images": images, "image_sizes": None}
        if self._jit_convolutions is None:
            return super().call(inputs, training=False)
        return self._detect_model(self._convolutions(inputs, False)[0], training=False)

    def _convolutions(self, inputs, training):
        """→ (the inputs of ``_proposal_model`` / ``_detect_model``, the XLA-compiled
        convolutions' outputs by name)."""
        front = self._front_model(inputs, training=training)
        convs = self._jit_convolutions(front["x"], training)
        after = [front["image_sizes"], front["scales"], *(convs[n] for n in self._conv_names)]
        return after, convs

    # Targets given as arrays are checked before Keras's loop (check_targets).
    def fit(self, x=None, y=None, *args, **kwargs):
        check_targets(y, self.config.num_classes)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_targets(y, self.config.num_classes)
        return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        check_targets(y, self.config.num_classes)
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        check_targets(y, self.config.num_classes)
        return super().test_on_batch(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        x = as_model_inputs(x)
        check_predict_input(x)
        if x["image_sizes"] is None:
            x = {"images": x["images"]}
        elif not on_tensorflow() and hasattr(x["images"], "shape"):
            return self._predict_by_size(x, *args, **kwargs)
        return super().predict(x, *args, **kwargs)

    def _predict_by_size(self, x, *args, **kwargs):
        """``predict`` of a zero-padded batch off TensorFlow: each image cut to its size,
        images of one size predicted together, the results back in the batch's order."""
        images = ops.convert_to_numpy(x["images"])
        sizes = [tuple(int(v) for v in size) for size in ops.convert_to_numpy(x["image_sizes"])]
        results = [None] * len(sizes)
        for size in dict.fromkeys(sizes):
            rows = [i for i, s in enumerate(sizes) if s == size]
            out = super().predict({"images": images[rows, : size[0], : size[1]]}, *args, **kwargs)
            for j, i in enumerate(rows):
                results[i] = {name: value[j] for name, value in out.items()}
        return {name: np.stack([r[name] for r in results]) for name in results[0]}

    def explain(self, images, boxes):
        """What R-FCN votes with, for pictures. ``boxes [B, R, 4]``: yxyx pixels of the
        input images → ``{"class_maps": [B, h, w, k²(C+1)], "class_bins": [B, R, k, k,
        C+1]`` (each bin's pooled class scores), ``"rois": [B, R, 4]`` (the boxes in the
        pixels of the resized image the maps were computed on)``}``."""
        if self.config.head != "rfcn":
            raise ValueError("explain() needs the R-FCN head (position-sensitive score maps)")
        raw = self._features_model(as_model_inputs(images), training=False)
        rois = ops.cast(boxes, "float32") * ops.tile(raw["scales"], [1, 2])[:, None, :]
        bins = self.get_layer("class_pool")(raw["class_maps"], rois)
        return {"class_maps": raw["class_maps"], "class_bins": bins, "rois": rois}

    # ---------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        cfg = self.config
        raw = y_pred
        if "rpn_logits" not in raw:  # JAX's test_step passes the detections
            raw = self._features(as_model_inputs(x), training=False)
        gt_boxes, gt_labels = unpack_targets(y, cfg.num_classes, cfg.bounding_box_format)
        gt_boxes = gt_boxes * ops.tile(raw["scales"], [1, 2])[:, None, :]  # → resized pixels
        seed = ops.stack([ops.convert_to_tensor(cfg.seed, "int32"), ops.cast(self._sampling_step(), "int32")])
        first_row = _first_image_index(ops.shape(raw["image_sizes"])[0])

        rpn_logits, rpn_deltas = flatten_rpn(raw["rpn_logits"], raw["rpn_deltas"])
        anchor_labels, anchor_targets = targets.assign_anchor_targets(
            raw["anchors"],
            gt_boxes,
            gt_labels,
            raw["image_sizes"],
            seed,
            positive_iou=cfg.rpn_positive_iou,
            negative_iou=cfg.rpn_negative_iou,
            batch_size=cfg.rpn_batch_size,
            positive_fraction=cfg.rpn_positive_fraction,
            allowed_border=cfg.rpn_allowed_border,
            first_row=first_row,
        )
        rpn_cls, rpn_box = losses.rpn_losses(rpn_logits, rpn_deltas, anchor_labels, anchor_targets)

        rois = targets.assign_roi_targets(
            raw["proposals"],
            raw["proposal_valid"],
            gt_boxes,
            gt_labels,
            positive_iou=cfg.roi_positive_iou,
            box_std=cfg.box_std,
        )
        class_logits, box_deltas = self._roi_model(
            {**{name: raw[name] for name in self._map_names}, "rois": rois["rois"]}, training=training
        )
        if cfg.roi_sampler == "ohem":
            per_cls, per_box = losses.per_roi_losses(
                class_logits, box_deltas, rois["labels"], rois["box_targets"]
            )
            weights = targets.ohem_select(per_cls + per_box, rois["valid"], cfg.roi_batch_size)
        else:
            weights = targets.random_roi_select(
                rois["labels"],
                rois["valid"],
                seed + 1,
                cfg.roi_batch_size,
                cfg.roi_positive_fraction,
                first_row,
            )
        cls_loss, box_loss = losses.head_losses(
            class_logits, box_deltas, rois["labels"], rois["box_targets"], weights
        )

        named = dict(zip(LOSS_NAMES, (rpn_cls, rpn_box, cls_loss, box_loss)))
        for name, value in named.items():
            self.loss_trackers[name].update_state(value)
        total = sum(named.values())
        if self.losses:
            total += sum(ops.cast(l, "float32") for l in self.losses)
        return total / _replicas_in_sync()

    def _sampling_step(self):
        """The training step the samplers are seeded with (with ``config.seed``): the
        optimizer's iteration count, so a resumed run draws what an unbroken one would.

        JAX's jitted step passes the optimizer's state as arguments; reading
        ``optimizer.iterations`` there would give the value at tracing, a constant, so the
        traced value ``compute_loss_and_updates`` was given is used instead."""
        if self._traced_step is not None:
            return self._traced_step
        return self.optimizer.iterations if self.optimizer is not None else 0

    def compute_loss_and_updates(self, *args, optimizer_variables=None, **kwargs):
        # JAX trainer only (see _sampling_step).
        step = None
        if optimizer_variables is not None and self.optimizer is not None:
            index = [i for i, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations]
            step = optimizer_variables[index[0]] if index else None
        object.__setattr__(self, "_traced_step", step)
        try:
            return super().compute_loss_and_updates(*args, optimizer_variables=optimizer_variables, **kwargs)
        finally:
            object.__setattr__(self, "_traced_step", None)

    def test_step(self, *args):
        """Like Keras's, but the losses need the raw tensors, not the detections. (JAX's
        stateless ``test_step(state, data)`` is Keras's own: ``compute_loss`` then gets the
        detections and computes the raw tensors itself.)"""
        if keras.backend.backend() == "jax":
            return super().test_step(*args)
        (data,) = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = as_model_inputs(x)
        raw = self._features(x, training=False)
        loss = self.compute_loss(x, y, raw, sample_weight, training=False)
        loss_tracker(self).update_state(loss * _replicas_in_sync(), sample_weight=ops.shape(x["images"])[0])
        return self.get_metrics_result()

    # ---------------------------------------------------------------- saving
    def get_config(self):
        # Weights travel in the .keras file: a reload must not download or read them again
        # (the freeze flags were resolved at construction, so the same layers stay frozen).
        config = self.config.replace(backbone_weights=None)
        return {"name": self.name, "format_version": FORMAT_VERSION, "config": config.to_dict()}

    @classmethod
    def from_config(cls, config):
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"this model file holds an RFCN of layout {config.get('format_version', 1)}, "
                f"written by an older rfcn_tf (0.1, a subclassed model); this rfcn_tf reads "
                f"layout {FORMAT_VERSION} only (every release since 0.2). Rebuild the model "
                "(RFCN(config=...)) and train or fine-tune it again."
            )
        return cls(config=RFCNConfig.from_dict(config["config"]), name=config.get("name", "rfcn"))


def _replicas_in_sync():
    """The replica count of the TensorFlow distribution strategy (1 elsewhere: JAX's
    ``keras.distribution`` computes the loss on the global batch)."""
    if not on_tensorflow():
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _first_image_index(local_batch):
    """The global index of this replica's first image (0 outside a TensorFlow distribution
    strategy): replica r of a strategy holds images r·B .. r·B + B − 1 of the global batch."""
    if not on_tensorflow():
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    return tf.cast(context.replica_id_in_sync_group, tf.int32) * local_batch


def _build_head(config, conv5):
    scale = 1.0 / config.feature_stride
    implementation = "gather" if config.portable else "crop_and_resize"
    if config.head == "rfcn":
        return RFCNHead(
            config.num_classes,
            conv5,
            k=config.k,
            channels=config.head_channels,
            psroi_mode=config.psroi_mode,
            samples_per_bin=config.psroi_samples,
            spatial_scale=scale,
            implementation=implementation,
        )
    return FasterRCNNHead(config.num_classes, conv5, spatial_scale=scale, implementation=implementation)
