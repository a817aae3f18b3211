"""The R-FCN model: a ``keras.Model`` that trains with ``fit`` and detects with ``predict``.

Data flow (``call``), top to bottom:

    images → preprocess (ResNet convention, padding zeroed, size rounded up to the stride)
           → trunk (conv1..conv4, feature_stride 16, or 8 for the small backbone)
           → RPN head → anchors → proposals (decode, clip, top-N, NMS)        [B, P, 4]
           → head.feature_maps: conv5 (dilated) → k²(C+1) + 4k² score maps   (once)
           → head.classify: PSRoIPool + vote per proposal                       (per RoI)
           → decoder: softmax, box decoding, per-class NMS                      → detections

``model(images)`` and ``model.predict(images)`` return the detections dict. In training
``call`` stops before the per-RoI step and returns the raw tensors; ``compute_loss`` adds
the ground truth to the proposals, assigns targets, runs the per-RoI step on them and
applies OHEM.
"""

import keras
import tensorflow as tf

from rfcn_tf import losses, targets
from rfcn_tf.anchors import anchor_grid
from rfcn_tf.backbones import build_backbone, preprocess
from rfcn_tf.config import RFCNConfig
from rfcn_tf.inputs import check_predict_input, to_model_format, unpack_images, unpack_targets
from rfcn_tf.layers.detection import DetectionDecoder
from rfcn_tf.layers.heads import FasterRCNNHead, RFCNHead
from rfcn_tf.layers.proposals import ProposalLayer
from rfcn_tf.layers.rpn import RPNHead

LOSS_NAMES = ("rpn_cls_loss", "rpn_box_loss", "cls_loss", "box_loss")
_KERAS_KWARGS = ("name", "dtype", "trainable")


@keras.saving.register_keras_serializable(package="rfcn_tf")
class RFCN(keras.Model):
    """R-FCN (Dai et al., NIPS 2016), or Faster R-CNN with ``head="faster_rcnn"``.

    ``RFCN(num_classes=20, backbone="resnet101", head="rfcn", ...)`` takes any
    ``RFCNConfig`` field as a keyword, or ``RFCN(config=RFCNConfig(...), **overrides)``.

    Inputs: images ``[B, H, W, 3]`` RGB in 0..255 (uint8 or float), or a dict
    ``{"images": ..., "image_sizes": [B, 2]}`` for a zero-padded batch of different-size
    images (``rfcn_tf.pack_images`` builds one). Boxes in and out are absolute pixels in
    ``config.bounding_box_format`` (default ``"yxyx"``).
    """

    def __init__(self, config=None, **kwargs):
        keras_kwargs = {k: kwargs.pop(k) for k in _KERAS_KWARGS if k in kwargs}
        if isinstance(config, dict):
            config = RFCNConfig.from_dict(config)
        config = (config or RFCNConfig()).replace(**kwargs) if kwargs else (config or RFCNConfig())
        super().__init__(**{"name": "rfcn", **keras_kwargs})
        loaded = config.backbone_weights is not None
        config = config.replace(  # resolve the "frozen iff weights are loaded" defaults
            freeze_stem=loaded if config.freeze_stem is None else config.freeze_stem,
            freeze_batchnorm=loaded if config.freeze_batchnorm is None else config.freeze_batchnorm)
        self.config = config

        self.trunk, conv5 = build_backbone(
            config.backbone, config.backbone_weights, dilated_conv5=config.head == "rfcn",
            freeze_stem=config.freeze_stem, freeze_batchnorm=config.freeze_batchnorm,
            output_stride=config.feature_stride)
        self.rpn_head = RPNHead(config.num_anchors, config.rpn_channels, name="rpn_head")
        self.proposal_layer = ProposalLayer(
            config.rpn_pre_nms_train, config.rpn_post_nms_train, config.rpn_pre_nms_test,
            config.rpn_post_nms_test, config.rpn_nms_iou, config.rpn_min_size, name="proposals")
        scale = 1.0 / config.feature_stride
        if config.head == "rfcn":
            self.head = RFCNHead(config.num_classes, conv5, k=config.k,
                                 channels=config.head_channels, psroi_mode=config.psroi_mode,
                                 samples_per_bin=config.psroi_samples, spatial_scale=scale,
                                 name="rfcn_head")
        else:
            self.head = FasterRCNNHead(config.num_classes, conv5, spatial_scale=scale,
                                       name="faster_rcnn_head")
        self.decoder = DetectionDecoder(config.box_std, config.nms_iou, config.score_threshold,
                                        config.max_detections, name="decoder")
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

        conv4_shape = self.trunk.output.shape
        self.rpn_head.build(conv4_shape)
        self.head.build(conv4_shape)
        self.built = True
        # The per-image path's ``tf.map_fn`` signature: ``_convolutions``' outputs, unbatched.
        self._per_image_signature = tf.nest.map_structure(
            lambda t: tf.TensorSpec([None, None, t.shape[-1]], tf.float32),
            self._convolutions(tf.zeros([1, 32, 32, 3])))

    # ---------------------------------------------------------------- forward
    def call(self, inputs, training=False):
        images, image_sizes = unpack_images(inputs)
        raw = self.forward(images, image_sizes, training=training)
        if training:
            return raw
        return self.detect(raw)

    def predict(self, x, *args, **kwargs):
        check_predict_input(x)
        return super().predict(x, *args, **kwargs)

    def forward(self, images, image_sizes, training=False):
        """Everything before the per-RoI work: convolutions, anchors and proposals."""
        x = self._preprocess(images, image_sizes)
        if training:
            conv = self._convolutions(x, training=True)
        else:
            conv = self._convolutions_per_image(x, image_sizes)
        return self.propose(conv, image_sizes, training=training)

    def propose(self, conv, image_sizes, training=False):
        """Convolution outputs → anchors and proposals; returns the raw-output dict."""
        shape = tf.shape(conv["rpn_logits"])
        rpn_logits = tf.reshape(conv["rpn_logits"], [shape[0], -1])
        rpn_deltas = tf.reshape(conv["rpn_deltas"], [shape[0], -1, 4])
        anchors = anchor_grid(shape[1], shape[2], self.config.feature_stride,
                              self.config.anchor_scales, self.config.anchor_ratios)
        proposals, _, valid = self.proposal_layer(rpn_logits, rpn_deltas, anchors, image_sizes,
                                                  training=training)
        return {"image_sizes": image_sizes, "anchors": anchors, "rpn_logits": rpn_logits,
                "rpn_deltas": rpn_deltas, "proposals": proposals, "proposal_valid": valid,
                "maps": conv["maps"]}

    def _convolutions(self, x, training=False):
        """Preprocessed images → RPN outputs ``[B, h, w, A]``, ``[B, h, w, 4A]`` and the
        head's feature maps, all at ``feature_stride``."""
        conv4 = self.trunk(x, training=training)
        rpn_logits, rpn_deltas = self.rpn_head(conv4)
        return {"rpn_logits": tf.cast(rpn_logits, tf.float32),
                "rpn_deltas": tf.cast(rpn_deltas, tf.float32),
                "maps": self.head.feature_maps(conv4, training=training)}

    def _convolutions_per_image(self, x, image_sizes):
        """``_convolutions`` on each image at its own (stride-rounded) size, so an image's
        detections do not depend on what it is batched with; the outputs are padded to the
        batch's size by repeating the last row/column (so border sampling reads the values
        it would read alone). A batch without padding takes the batched path."""
        stride = self.config.feature_stride
        shape = tf.shape(x)
        rounded = (image_sizes + stride - 1) // stride * stride
        unpadded = tf.reduce_all(rounded == shape[None, 1:3])

        def one(args):
            image, size = args
            out = self._convolutions(image[None, : size[0], : size[1]])
            return tf.nest.map_structure(
                lambda t: _repeat_edges(t[0], shape[1] // stride, shape[2] // stride), out)

        def per_image():
            return tf.map_fn(one, (x, rounded), fn_output_signature=self._per_image_signature)

        return tf.cond(unpadded, lambda: self._convolutions(x), per_image)

    def detect(self, raw):
        """Raw forward outputs → the detections dict (per-RoI step + decoding)."""
        class_logits, box_deltas = self.head.classify(raw["maps"], raw["proposals"])
        detections = self.decoder(raw["proposals"], raw["proposal_valid"], class_logits,
                                  box_deltas, raw["image_sizes"])
        detections["boxes"] = to_model_format(detections["boxes"], self.config.bounding_box_format)
        return detections

    def explain(self, images, boxes):
        """What R-FCN votes with, for pictures: ``(class score maps [B, h, w, k²(C+1)],
        per-bin class scores [B, R, k, k, C+1])`` for ``boxes [B, R, 4]`` yxyx pixels."""
        if self.config.head != "rfcn":
            raise ValueError("explain() needs the R-FCN head (position-sensitive score maps)")
        images, image_sizes = unpack_images(images)
        maps = self.forward(images, image_sizes)["maps"]
        class_bins, _ = self.head.bins(maps, tf.cast(boxes, tf.float32))
        return maps["class"], class_bins

    def _preprocess(self, images, image_sizes):
        """0..255 RGB → the backbone's convention; pixels beyond each true size set to 0;
        height and width padded up to a multiple of the stride."""
        x = preprocess(tf.cast(images, tf.float32))
        shape = tf.shape(x)
        rows = tf.range(shape[1])[None, :, None] < image_sizes[:, 0:1, None]
        cols = tf.range(shape[2])[None, None, :] < image_sizes[:, 1:2, None]
        x = tf.where((rows & cols)[..., None], x, 0.0)
        stride = self.config.feature_stride
        pad_h = (-shape[1]) % stride
        pad_w = (-shape[2]) % stride
        return tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    # ---------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        cfg = self.config
        gt_boxes, gt_labels = unpack_targets(y, cfg.num_classes, cfg.bounding_box_format)
        raw = y_pred
        step = self.optimizer.iterations if self.optimizer is not None else 0
        seed = tf.stack([tf.constant(cfg.seed, tf.int64), tf.cast(step, tf.int64)])

        anchor_labels, anchor_targets = targets.assign_anchor_targets(
            raw["anchors"], gt_boxes, gt_labels, raw["image_sizes"], seed,
            positive_iou=cfg.rpn_positive_iou, negative_iou=cfg.rpn_negative_iou,
            batch_size=cfg.rpn_batch_size, positive_fraction=cfg.rpn_positive_fraction,
            allowed_border=cfg.rpn_allowed_border)
        rpn_cls, rpn_box = losses.rpn_losses(raw["rpn_logits"], raw["rpn_deltas"],
                                             anchor_labels, anchor_targets)

        rois = targets.assign_roi_targets(raw["proposals"], raw["proposal_valid"], gt_boxes,
                                          gt_labels, positive_iou=cfg.roi_positive_iou,
                                          box_std=cfg.box_std)
        class_logits, box_deltas = self.head.classify(raw["maps"], rois["rois"])
        if cfg.roi_sampler == "ohem":
            per_cls, per_box = losses.per_roi_losses(class_logits, box_deltas, rois["labels"],
                                                     rois["box_targets"])
            weights = targets.ohem_select(per_cls + per_box, rois["valid"], cfg.roi_batch_size)
        else:
            weights = targets.random_roi_select(rois["labels"], rois["valid"], seed + 1,
                                                cfg.roi_batch_size, cfg.roi_positive_fraction)
        cls_loss, box_loss = losses.head_losses(class_logits, box_deltas, rois["labels"],
                                                rois["box_targets"], weights)

        named = dict(zip(LOSS_NAMES, (rpn_cls, rpn_box, cls_loss, box_loss)))
        for name, value in named.items():
            self.loss_trackers[name].update_state(value)
        total = tf.add_n(list(named.values()))
        if self.losses:
            total += tf.add_n([tf.cast(l, tf.float32) for l in self.losses])
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    def test_step(self, data):
        """Like Keras's, but the losses need the raw tensors, not the detections."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, image_sizes = unpack_images(x)
        raw = self.forward(images, image_sizes, training=False)
        loss = self.compute_loss(x, y, raw, sample_weight, training=False)
        self._loss_tracker.update_state(
            loss * tf.distribute.get_strategy().num_replicas_in_sync,
            sample_weight=tf.shape(images)[0])
        return self.get_metrics_result()

    # ---------------------------------------------------------------- saving
    def get_config(self):
        # Weights travel in the .keras file: a reload must not download or read them again
        # (the freeze flags were resolved at construction, so the same layers stay frozen).
        config = self.config.replace(backbone_weights=None)
        return {"name": self.name, "config": config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(config=RFCNConfig.from_dict(config["config"]), name=config.get("name", "rfcn"))


def _repeat_edges(t, height, width):
    """``[h, w, C]`` → ``[height, width, C]`` by repeating the last row and column."""
    rows = tf.minimum(tf.range(height), tf.shape(t)[0] - 1)
    cols = tf.minimum(tf.range(width), tf.shape(t)[1] - 1)
    return tf.gather(tf.gather(t, rows, axis=0), cols, axis=1)
