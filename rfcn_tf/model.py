"""The R-FCN model: a functional ``keras.Model`` that trains with ``fit`` and detects with
``predict``.

The graph, built in ``__init__`` from ``keras.Input``s and layers, top to bottom:

    images (+ image_sizes) → resize to the model's scale → preprocess (ResNet convention or per image)
      → convolutions (a nested model, once per image):
          trunk conv1..conv4 (a keras.applications ResNet; stride 16, or 8 for "small")
          → RPN: 3×3 conv → objectness logits + deltas
          → conv5 (dilated) → 1×1 conv → k²(C+1) class maps + 4k² box maps
      → anchors → proposals (clip, top-N, NMS)                                  [B, P, 4]
      → roi_head (a nested model, per RoI; R-FCN's has no weights): PSRoIPool + vote
      → decoder: softmax, box decoding, per-class NMS, boxes back in the input's pixels

``model(images)`` and ``model.predict(images)`` return the detections dict. Training runs
the same graph up to the proposals (``features_model``, a view on the same layers);
``compute_loss`` adds the ground truth to the proposals, assigns targets, runs ``roi_head``
on them and applies OHEM. On TensorFlow ``compile(jit_compile=True)`` puts the
convolutions part under XLA, wherever it runs; XLA cannot take the whole step there.
"""

import contextlib

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
# The layout of a .keras file (get_config and the weights' paths): 2 in rfcn_tf 0.2–0.7 (one
# flat graph; rfcn_tf.model_files reads it), 3 since 0.8 (the two nested parts).
FORMAT_VERSION = 3
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

        # Functional model: two named parts — the convolutions (once per image) and the
        # per-RoI head — joined by the layers without weights that sit between them.
        images = keras.Input((None, None, 3), name="images")
        image_sizes = keras.Input((2,), dtype="int32", name="image_sizes", optional=True)
        x, sizes, scales = ImageResizer(config.min_side, config.max_side, config.portable, name="resize")(
            images, image_sizes
        )
        x = Preprocess(stride, config.input_normalization, name="preprocess")(x, sizes)
        trunk, conv5 = build_backbone(
            config.backbone,
            config.backbone_weights,
            dilated_conv5=config.head == "rfcn",
            freeze_stem=config.freeze_stem,
            freeze_batchnorm=config.freeze_batchnorm,
            output_stride=stride,
        )
        convolutions, head = _convolutions_part(config, trunk, conv5)
        convs = convolutions(x)
        anchors = AnchorGrid(stride, config.anchor_scales, config.anchor_ratios, name="anchors")(
            convs["rpn_logits"]
        )
        proposals, _, valid = ProposalLayer(
            config.rpn_pre_nms_train,
            config.rpn_post_nms_train,
            config.rpn_pre_nms_test,
            config.rpn_post_nms_test,
            config.rpn_nms_iou,
            config.rpn_min_size,
            name="proposals",
        )(convs["rpn_logits"], convs["rpn_deltas"], anchors, sizes)
        maps = {name: convs[name] for name in head.map_names}
        roi_head = _roi_head_part(head, maps)
        class_logits, box_deltas = roi_head({**maps, "rois": proposals})
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
        # On TensorFlow the whole step cannot be XLA-compiled (the resize's ScaleAndTranslate,
        # crop_and_resize and the dynamic shapes of proposals and NMS have no XLA kernels);
        # compile(jit_compile=...) compiles the convolutions part instead (see compile).
        self.supports_jit = not on_tensorflow()
        self._jit_request = None  # compile's jit_compile on TensorFlow, for get_compile_config

        # The training step's view of the same graph (untracked: it adds no weights): the
        # tensors before the per-RoI step, which compute_loss reads.
        raw = {
            "image_sizes": sizes,
            "scales": scales,
            "anchors": anchors,
            "rpn_logits": convs["rpn_logits"],
            "rpn_deltas": convs["rpn_deltas"],
            "proposals": proposals,
            "proposal_valid": valid,
            **maps,
        }
        object.__setattr__(self, "_features_model", keras.Model(inputs, raw, name="rfcn_features"))
        object.__setattr__(self, "_in_step", 0)  # see _loss_inputs
        object.__setattr__(self, "_traced_step", None)  # see _sampling_step

    @property
    def convolutions(self):
        """The per-image part (a nested ``keras.Model``, layer ``"convolutions"``): the
        preprocessed image ``[B, H, W, 3]`` → ``{"rpn_logits" [B, h, w, A], "rpn_deltas"
        [B, h, w, 4A]`` and the score maps (R-FCN: ``"class_maps"``, ``"box_maps"``; Faster
        R-CNN: ``"conv4"``)``}``: trunk, RPN, conv5 and the 1×1 convolutions."""
        return self.get_layer("convolutions")

    @property
    def roi_head(self):
        """The per-RoI part (a nested ``keras.Model``, layer ``"roi_head"``): ``{score maps…,
        "rois": [B, R, 4] yxyx pixels of the resized image}`` → ``(class logits [B, R, C+1],
        box deltas [B, R, 4])``. R-FCN's has no weights."""
        return self.get_layer("roi_head")

    @property
    def features_model(self):
        """The graph before the per-RoI step (a ``keras.Model`` on the same layers):
        inputs → ``{"image_sizes", "scales", "anchors", "rpn_logits", "rpn_deltas",
        "proposals", "proposal_valid"`` and the score maps``}``; what ``compute_loss`` reads."""
        return self._features_model

    @property
    def trunk(self):
        """The backbone up to conv4 (a ``keras.Model`` nested in ``convolutions``)."""
        return self.get_layer(self._trunk_name)

    @property
    def conv5(self):
        """The backbone's conv5 (dilated for R-FCN; a ``keras.Model`` nested in
        ``convolutions``, or in ``roi_head`` for Faster R-CNN)."""
        return self.get_layer(self._conv5_name)

    def get_layer(self, name=None, index=None):
        """Keras's ``get_layer``; a name not at the top level is looked up in the two parts
        (``"class_maps"``, ``"class_pool"``, ``"rpn_conv"``, ...)."""
        if name is None or any(layer.name == name for layer in self.layers):
            return super().get_layer(name, index)
        parts = [keras.Model.get_layer(self, part) for part in ("convolutions", "roi_head")]
        for layer in (layer for part in parts for layer in part.layers):
            if layer.name == name and not isinstance(layer, keras.layers.InputLayer):
                return layer
        raise ValueError(
            f"no layer named {name!r} in this RFCN: the top level has "
            f"{[layer.name for layer in self.layers]}, its parts "
            f"{[layer.name for part in parts for layer in part.layers]}"
        )

    @property
    def jit_compile_convolutions(self):
        """Whether the convolutions part runs under XLA (``compile(jit_compile=...)`` on
        TensorFlow)."""
        return self.convolutions.xla

    def compile(self, *args, jit_compile="auto", **kwargs):
        """Keras's ``compile``. On TensorFlow ``jit_compile=True`` (or ``"auto"`` on a GPU,
        outside a distribution strategy) puts the convolutions part under XLA, forward and
        backward, and Keras's own ``jit_compile`` stays False (``supports_jit``); on JAX the
        whole step is jitted, as Keras does."""
        if not on_tensorflow():
            return super().compile(*args, jit_compile=jit_compile, **kwargs)
        xla = jit_compile
        if jit_compile == "auto":
            xla = not kwargs.get("run_eagerly") and self._auto_xla_convolutions()
        super().compile(*args, jit_compile=False, **kwargs)
        self._jit_request = jit_compile
        self.convolutions.xla = bool(xla) and not self.run_eagerly

    def _auto_xla_convolutions(self):
        """``jit_compile="auto"`` for the convolutions on TensorFlow: Keras's rule for a
        model — a GPU, no distribution strategy, no op determinism (XLA lacks deterministic
        kernels for some ops)."""
        import tensorflow as tf

        return (
            any(d.device_type != "CPU" for d in tf.config.list_physical_devices())
            and not self._distribute_strategy
            and not tf.config.experimental.is_op_determinism_enabled()
        )

    # With compile overridden, Keras asks for these two (it would skip compiling a loaded model).
    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._jit_request is not None:
            config["jit_compile"] = self._jit_request
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # so its saved state can be loaded

    # ---------------------------------------------------------------- forward
    def __call__(self, inputs, *args, **kwargs):
        inputs = as_model_inputs(inputs)
        images = inputs["images"]
        if hasattr(images, "shape") and hasattr(images, "dtype"):
            check_image_spec(images.shape, images.dtype)  # before Keras's own, vaguer check
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        inputs = as_model_inputs(inputs)  # JAX's stateless calls skip __call__
        if self._in_step:
            return self._features_model(inputs, training=training)
        if inputs["image_sizes"] is None:
            return self._detect(inputs["images"], training)
        if not on_tensorflow():
            # A padded batch's resized canvas would have a data-dependent size, which JAX
            # cannot trace: the graph takes the batch as it is, at the model's scale (what
            # the data pipelines give); predict() detects other padded batches per image.
            return super().call(inputs, training=training)
        return detect_each_if_padded(
            lambda images: self._detect(images, training),
            inputs["images"],
            inputs["image_sizes"],
            self.config.max_detections,
        )

    def _detect(self, images, training=None):
        """Detections of an unpadded batch ``[B, H, W, 3]``."""
        return super().call({"images": images, "image_sizes": None}, training=training)

    @contextlib.contextmanager
    def _loss_inputs(self):
        """Within (a training or test step): ``call`` returns ``features_model``'s outputs,
        what ``compute_loss`` reads, instead of the detections — Keras's steps hand
        ``compute_loss`` what the model returned, and the loss needs the tensors before NMS.
        A count, not a flag: a MirroredStrategy traces its replicas' steps in threads that
        take turns, and one leaving must not end another's."""
        object.__setattr__(self, "_in_step", self._in_step + 1)
        try:
            yield
        finally:
            object.__setattr__(self, "_in_step", self._in_step - 1)

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
        bins = self.roi_head.get_layer("class_pool")(raw["class_maps"], rois)
        return {"class_maps": raw["class_maps"], "class_bins": bins, "rois": rois}

    # ---------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        cfg = self.config
        raw = y_pred  # features_model's outputs (see _loss_inputs)
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
        maps = {name: raw[name] for name in self._map_names}
        class_logits, box_deltas = self.roi_head({**maps, "rois": rois["rois"]}, training=training)
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
        # JAX trainer only: its train and test steps (see _sampling_step, _loss_inputs).
        step = None
        if optimizer_variables is not None and self.optimizer is not None:
            index = [i for i, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations]
            step = optimizer_variables[index[0]] if index else None
        object.__setattr__(self, "_traced_step", step)
        try:
            with self._loss_inputs():
                return super().compute_loss_and_updates(
                    *args, optimizer_variables=optimizer_variables, **kwargs
                )
        finally:
            object.__setattr__(self, "_traced_step", None)

    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # compute_loss_and_updates asks for the features
            return super().train_step(*args)
        with self._loss_inputs():
            return super().train_step(*args)

    def test_step(self, *args):
        """Keras's, with the features as ``y_pred`` (``_loss_inputs``). On TensorFlow and
        PyTorch the loss tracker is updated here, with the batch size read from the images
        (Keras reads the first of ``x``'s flattened entries, which may be ``image_sizes``)."""
        if keras.backend.backend() == "jax":
            return super().test_step(*args)
        (data,) = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = as_model_inputs(x)
        raw = self._features_model(x, training=False)
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
        version = config.get("format_version", 1)
        if version == 2:
            raise ValueError(
                "this model file holds an RFCN of layout 2, written by rfcn_tf 0.2–0.7 (one flat "
                "graph); keras.models.load_model reads layout 3 only. Read it with "
                "rfcn_tf.load_model(path) (the rfcn-tf commands do), and save it again to convert it."
            )
        if version != FORMAT_VERSION:
            raise ValueError(
                f"this model file holds an RFCN of layout {version}, "
                + (
                    "written by rfcn_tf 0.1 (a subclassed model), which no later release reads. "
                    "Rebuild the model (RFCN(config=...)) and train or fine-tune it again."
                    if version == 1
                    else f"written by a newer rfcn_tf; this one reads layouts 2 and {FORMAT_VERSION}."
                )
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


class Convolutions(keras.Model):
    """The convolutions part (functional): under XLA when ``xla`` is set (TensorFlow),
    forward and backward, wherever the model's graphs call it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.xla = False

    @property
    def xla(self):
        return self._xla is not None

    @xla.setter
    def xla(self, value):
        compiled = None
        if value:
            import tensorflow as tf

            compiled = tf.function(
                lambda x, training: super(Convolutions, self).call(x, training=training),
                jit_compile=True,
                reduce_retracing=True,
            )
        object.__setattr__(self, "_xla", compiled)

    def call(self, inputs, training=None, mask=None):
        if self._xla is None:
            return super().call(inputs, training=training, mask=mask)
        return self._xla(inputs, training)


def _convolutions_part(config, trunk, conv5):
    """→ (the part: the preprocessed image → ``{"rpn_logits", "rpn_deltas", score maps…}``,
    the head, whose per-RoI layers the roi_head part takes). The RPN's layers are made before
    the head's: their initializers draw their seeds in that order (the order of 0.2–0.7, so
    a seed gives the weights it gave then)."""
    x = keras.Input((None, None, 3), name="preprocessed")
    conv4 = trunk(x)
    rpn_logits, rpn_deltas = rpn_head(conv4, config.num_anchors, config.rpn_channels)
    head = _build_head(config, conv5)
    outputs = {"rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas, **head.score_maps(conv4)}
    return Convolutions(x, outputs, name="convolutions"), head


def _roi_head_part(head, maps):
    """``{score maps…, "rois"}`` → ``(class logits, box deltas)``; ``maps``: the score-map
    tensors the part will be called on (for their shapes and dtypes)."""
    inputs = {name: keras.Input(t.shape[1:], dtype=t.dtype, name=name) for name, t in maps.items()}
    inputs["rois"] = keras.Input((None, 4), name="rois")
    return keras.Model(inputs, head.per_roi(inputs, inputs["rois"]), name="roi_head")


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
